"""The HTTP control API of the daemon (FastAPI on uvicorn).

* ``server``: ``serve_api(daemon)``, the uvicorn server in the supervisor's task group
  (TCP, TLS or a UNIX socket; the bound address in ``daemon.api_url``);
* ``app``: ``create_app(daemon)``, routes, error handling and the role check wired;
* ``schemas``: every request and response body; ``views``: the daemon's state as them;
* ``errors``: the one mapping of failures to error bodies, and the catch-all;
* ``access``: who may do what (one dependency on every route);
* ``events``: the server-sent event stream;
* ``routes/``: batches, recipes, instruments (and health), events;
* ``client``: the API's client for ``cellfab batch`` (httpx; loads no server code).

Importing this package imports nothing: the CLI's client must not load FastAPI.
"""
