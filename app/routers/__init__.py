"""HTTP routers: thin handlers that parse parameters, call the engine on the pool, and answer."""
