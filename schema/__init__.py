"""The GraphQL schema: Strawberry types, inputs and enums, and the Schema object."""
