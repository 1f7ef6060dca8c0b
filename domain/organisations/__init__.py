"""The organisations aggregate:

- ``models``: organisations, their users and API tokens;
- ``commands``: create and rename an organisation, add a user;
- ``tokens``: commands: issue, create and revoke API tokens; authenticating a bearer secret;
- ``queries``: reads: the viewer's organisation, one user, pages of users and tokens.
"""
