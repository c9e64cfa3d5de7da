"""MyRouter gRPC bridge: MyRouter's OpenAI-compatible chat API, served over gRPC.

The modules, each owning one thing:

* ``config``     the one typed configuration object; its settings table makes the
                 ``serve`` flags, the environment reading and docs/configuration.md
* ``errors``     the exception hierarchy and its mapping to gRPC status
* ``sse``        server-sent-events decoding (pure)
* ``mapping``    JSON <-> protobuf (pure)
* ``validation`` request checks before any upstream call (pure)
* ``upstream``   httpx requests over one pooled transport towards the API; each answer's
                 status, judged once; the call's time budget
* ``event_stream`` a streamed answer: the one reader of its events (framing, sizes, ends)
* ``whole_answer`` an answer read whole: a completion, the model list, an error body
* ``failures``   every way an exchange fails, as the bridge's exception: transport
                 failures by one table, error statuses, in-band error objects
* ``retries``    an upstream call as a few attempts before the caller sees anything:
                 retries within a budget, fallback models, breakers consulted
* ``breaker``    a circuit breaker per upstream model (pure)
* ``transport``  the httpx transport under it: aiohttp's connector and C parser
* ``loop``       which event loop runs the process (uvloop by default)
* ``otel``       optional OpenTelemetry: server spans, upstream context, GenAI metrics
* ``propagation`` which caller metadata (trace headers) goes upstream
* ``callers``    who is calling: the identity from tls, xfcc or a header (pure)
* ``policy``     the caller policy file: rules, labels, reloads
* ``upstream_call`` what an RPC asks of the upstream: credentials, time budget, request id
* ``service``    the gRPC ChatService
* ``server``     the grpc.aio server's lifecycle
* ``admission``  how many calls run at once, and the drain at shutdown
* ``quotas``     per-caller limits and token budgets, in process or shared in Redis
* ``access``     what a caller may do, decided per call: identity, policy, limits
* ``workers``    ``--workers N``: N processes on one port (SO_REUSEPORT)
* ``ports``      one bridge per port: the check, the lock, clear bind errors
* ``open_files`` the open-files limit raised at start, and a warning when short
* ``server_options`` the grpc.aio server's options: keepalive, connection age, sizes
* ``tls``        TLS/mTLS credentials of the listener; the upstream's CA bundle
* ``health``     grpc.health.v1 statuses (SERVING, NOT_SERVING on shutdown)
* ``metrics``    Prometheus metrics (ours and the GenAI conventions') and /metrics
* ``observe``    the per-RPC record: one metrics update and one log line
* ``logs``       the logging set-up: JSON / text format and redaction, installed together
* ``redaction``  credentials out of every text that leaves: statuses, details, log lines
* ``chat_cli``   the small human chat client (the ``chat`` and ``models`` commands)
* ``cli``        ``myrouter-bridge`` / ``python -m bridge``

The embedded upstream (a deterministic local MyRouter API for demos and tests)
and the demo are the separate ``myrouter_upstream`` package, which never
imports this one; ``myrouter-bridge upstream`` and ``demo`` only delegate to it.
"""

__all__ = ["__version__"]

__version__ = "0.1.0"
