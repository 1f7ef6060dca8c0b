"""The event every change of an after-sales (return) order records."""

from __future__ import annotations

from domain.events import EventType, record_event
from domain.models.distribution import AfterSalesOrder


async def return_event(item: AfterSalesOrder, actor_user_id: int | None) -> None:
    await record_event(
        type=EventType.RETURN_STATUS_CHANGED,
        subject_type="AfterSalesOrder",
        subject_id=item.id,
        audience=[item.distributor_id, item.supplier_id],
        payload={
            "afterSalesId": str(item.id),
            "number": item.number,
            "status": item.status.value,
            "pushStatus": item.push_status.value,
            "withdrawalStatus": item.withdrawal_status.value if item.withdrawal_status else None,
            "error": item.push_error,
        },
        actor_user_id=actor_user_id,
    )
