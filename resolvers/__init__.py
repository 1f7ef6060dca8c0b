"""Root Query, Mutation and Subscription fields: authorise, call the domain, map the result."""
