"""Process assembly: settings, the ASGI app, its lifespan and the command line."""
