"""Server plumbing below the app: the supervisor that deals connections to workers
(`dealer`), uvicorn's protocol with the worker's reports (`protocol`), and pinning workers
to CPUs (`affinity`)."""
