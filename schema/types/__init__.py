"""GraphQL object types, inputs and enums. Pure mapping from domain objects; no rules here."""
