"""Business model: Tortoise models, state rules and services.

Imports neither Strawberry nor httpx.
"""
