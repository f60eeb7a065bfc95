"""Write an EMQX ExHook provider as a class; serve it to EMQX 4.x (package emqx.exhook.v1),
5.0-5.8 (v2) and 5.9+ (v3) on one port, directly or behind exhook-gateway.

    class Auth(Provider):
        def client_authenticate(self, request):
            return deny() if request.clientinfo.username == "mallory" else allow()

    serve(Auth(), "127.0.0.1:9001")

* One method per EMQX hookpoint (``client_authenticate`` for ``client.authenticate``...). The
  methods a subclass overrides are the hooks it registers in OnProviderLoaded; the others are
  never called. ``topics`` (class attribute) filters the message.* hooks (empty: every topic).
* A method gets the request of the caller's package as is: the field names are the same in
  every package, except v1's ``TopicFilter.qos`` (v2/v3: ``subopts.qos``) and v3's extra
  ``user_props``. ``BrokerInfo.uptime`` (``provider_loaded``) is text in v1, milliseconds after.
* Valued hooks (authenticate, authorize, publish) return an answer: ``allow()``, ``deny()``,
  ``ignore()`` (also ``None``), ``True``/``False``, ``rewrite(message).topic(..).payload(..)``,
  ``stop_publish()``; ``.stop()`` / ``.pass_on()`` make an answer final or not
  (``allow().stop()``, ``deny().pass_on()``), as in the Rust kit. An exception answers gRPC
  INTERNAL: the gateway (or EMQX) applies the provider's ``failed_action``.
* Notification hooks return nothing; the call is answered EmptySuccess as soon as the method
  returns, also when it raised (logged).
* Methods run on the server's worker threads, several at a time: guard shared state.
* Nothing here logs a request: ``str(request)`` would show ``clientinfo.password``.
"""

import argparse
import dataclasses
import logging
import signal
from concurrent import futures

import grpc

from ._pb import exhook_v1_pb2, exhook_v2_pb2, exhook_v3_pb2

__all__ = ["Provider", "allow", "deny", "ignore", "rewrite", "stop_publish", "serve", "start", "main", "TLS"]
__all__ += ["PUBLISH", "SUBSCRIBE", "PACKAGES"]

log = logging.getLogger("exhook_provider")
PACKAGES = {1: exhook_v1_pb2, 2: exhook_v2_pb2, 3: exhook_v3_pb2}
CONTINUE, IGNORE, STOP_AND_RETURN = 0, 1, 2  # ValuedResponse.ResponsedType (EMQX 4.3.3+)
PUBLISH, SUBSCRIBE = 0, 1  # ClientAuthorizeRequest.type (v1: ClientCheckAclRequest.type)
VALUED = ["client_authenticate", "client_authorize", "message_publish"]
NOTIFY = [
    "client_connect", "client_connack", "client_connected", "client_disconnected",
    "client_subscribe", "client_unsubscribe", "session_created", "session_subscribed",
    "session_unsubscribed", "session_resumed", "session_discarded", "session_takenover",
    "session_terminated", "message_delivered", "message_dropped", "message_acked",
]  # fmt: skip
V1_NAMES = {"client_authorize": "client_check_acl", "session_takenover": "session_takeovered"}


def hookpoint(method, version):
    """``client_authorize`` -> ``client.authorize`` (v1: ``client.check_acl``)."""
    return (V1_NAMES.get(method, method) if version == 1 else method).replace("_", ".", 1)


def rpc(method, version):
    """``client_authorize`` -> ``OnClientAuthorize`` (v1: ``OnClientCheckAcl``)."""
    return "On" + "".join(w.capitalize() for w in hookpoint(method, version).replace(".", "_").split("_"))


class Provider:
    """Override the hooks you serve; the defaults mean "no opinion" and are not registered."""

    topics: list = []  # topic filters of the message.* hooks; empty: every topic

    def provider_loaded(self, request):
        """OnProviderLoaded (request.broker, request.meta); always called."""

    def provider_unloaded(self, request):
        """OnProviderUnloaded; always called."""

    def client_authenticate(self, request): ...
    def client_authorize(self, request): ...
    def message_publish(self, request): ...
    def client_connect(self, request): ...
    def client_connack(self, request): ...
    def client_connected(self, request): ...
    def client_disconnected(self, request): ...
    def client_subscribe(self, request): ...
    def client_unsubscribe(self, request): ...
    def session_created(self, request): ...
    def session_subscribed(self, request): ...
    def session_unsubscribed(self, request): ...
    def session_resumed(self, request): ...
    def session_discarded(self, request): ...
    def session_takenover(self, request): ...
    def session_terminated(self, request): ...
    def message_delivered(self, request): ...
    def message_dropped(self, request): ...
    def message_acked(self, request): ...

    def registered(self):
        """The hook methods this class overrides: what OnProviderLoaded registers."""
        return [m for m in VALUED + NOTIFY if getattr(type(self), m) is not getattr(Provider, m)]

    def hook_specs(self, version):
        """(hookpoint, topics) pairs of the LoadedResponse for package ``version``."""
        registered = self.registered()
        return [(hookpoint(m, version), list(self.topics) if m.startswith("message") else []) for m in registered]


class Answer:
    """A valued hook's answer; message answers copy the request's (or a given) message whole."""

    def __init__(self, kind, result=None, message=None, publish=False):
        self.kind, self.result, self.message, self.publish, self.edits = kind, result, message, publish, {}

    def stop(self):
        """Final: the chain ends with this value (STOP_AND_RETURN)."""
        self.kind = IGNORE if self.kind == IGNORE else STOP_AND_RETURN
        return self

    def pass_on(self):
        """Not final: the next provider still has its say (CONTINUE)."""
        self.kind = IGNORE if self.kind == IGNORE else CONTINUE
        return self

    def topic(self, topic):
        self.edits["topic"] = topic
        return self

    def payload(self, payload):
        self.edits["payload"] = payload.encode() if isinstance(payload, str) else bytes(payload)
        return self

    def qos(self, qos):
        self.edits["qos"] = qos
        return self

    def header(self, name, value):
        self.edits.setdefault("headers", {})[name] = value
        return self

    def response(self, pb, request):
        """The package's ValuedResponse for ``request``."""
        response = pb.ValuedResponse(type=self.kind)
        if self.result is not None:
            response.bool_result = self.result
        elif self.publish:
            # Echo the whole message (id, from, qos, headers...): EMQX takes qos, topic and payload
            # from it. Serialized, so a message of another package copies too.
            source = self.message if self.message is not None else request.message
            response.message.MergeFromString(source.SerializeToString())
            for field, value in self.edits.items():
                if field == "headers":
                    response.message.headers.update(value)
                else:
                    setattr(response.message, field, value)
        return response


def allow():
    """Authenticate/authorize: yes (CONTINUE true: a later provider of the chain may still say no)."""
    return Answer(CONTINUE, result=True)


def deny():
    """Authenticate/authorize: no, final (STOP_AND_RETURN false)."""
    return Answer(STOP_AND_RETURN, result=False)


def ignore():
    """No opinion: the chain goes on with the value it had."""
    return Answer(IGNORE)


def rewrite(message=None):
    """message.publish: CONTINUE with ``message`` (default: the request's), then ``.topic()``,
    ``.payload()``, ``.qos()``, ``.header()`` change it; everything else is echoed."""
    return Answer(CONTINUE, message=message, publish=True)


def stop_publish(message=None):
    """message.publish: not delivered to subscribers (header allow_publish=false), final."""
    return Answer(STOP_AND_RETURN, message=message, publish=True).header("allow_publish", "false")


class _Package:
    """The gRPC methods of one package (emqx.exhook.vN.HookProvider) calling one provider."""

    def __init__(self, provider, version):
        self.provider, self.version, self.pb = provider, version, PACKAGES[version]

    def handler(self):
        service = self.pb.DESCRIPTOR.services_by_name["HookProvider"]
        calls = {rpc(m, self.version): (m, self.valued if m in VALUED else self.notify) for m in VALUED + NOTIFY}
        calls |= {"OnProviderLoaded": (None, self.loaded), "OnProviderUnloaded": (None, self.unloaded)}
        handlers = {}
        for method in service.methods:
            name, call = calls[method.name]
            request, reply = getattr(self.pb, method.input_type.name), getattr(self.pb, method.output_type.name)
            handlers[method.name] = grpc.unary_unary_rpc_method_handler(
                call(name), request_deserializer=request.FromString, response_serializer=reply.SerializeToString
            )
        return grpc.method_handlers_generic_handler(service.full_name, handlers)

    def loaded(self, _):
        def call(request, context):
            self.provider.provider_loaded(request)
            specs = self.provider.hook_specs(self.version)
            log.info("loaded by %s (v%d): %s", request.meta.node or "?", self.version, [n for n, _ in specs])
            return self.pb.LoadedResponse(hooks=[self.pb.HookSpec(name=n, topics=t) for n, t in specs])

        return call

    def unloaded(self, _):
        def call(request, context):
            self.provider.provider_unloaded(request)
            return self.pb.EmptySuccess()

        return call

    def valued(self, method):
        hook = getattr(self.provider, method)

        def call(request, context):
            try:
                answer = hook(request)
                if answer is None or isinstance(answer, bool):
                    answer = ignore() if answer is None else allow() if answer else deny()
                return answer.response(self.pb, request)
            except Exception:
                log.exception("%s failed", method)  # the traceback, never the request
                context.abort(grpc.StatusCode.INTERNAL, f"{method} failed")

        return call

    def notify(self, method):
        hook = getattr(self.provider, method)

        def call(request, context):
            try:
                hook(request)
            except Exception:
                log.exception("%s failed", method)
            return self.pb.EmptySuccess()

        return call


@dataclasses.dataclass
class TLS:
    """Serve over TLS: PEM certificate chain and key; with ``client_ca_file`` callers must
    present a certificate it signed (mTLS)."""

    cert_file: str
    key_file: str
    client_ca_file: str | None = None

    def credentials(self):
        def read(path):
            with open(path, "rb") as f:
                return f.read()

        ca = read(self.client_ca_file) if self.client_ca_file else None
        pair = [(read(self.key_file), read(self.cert_file))]
        return grpc.ssl_server_credentials(pair, root_certificates=ca, require_client_auth=ca is not None)


def start(provider, address="127.0.0.1:9001", *, tls=None, max_workers=16):
    """Starts serving v1, v2 and v3 on ``address`` (port 0: any); returns (grpc server, port)."""
    # No SO_REUSEPORT (grpc's default on Linux): a port in use is an error, not a shared port.
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=max_workers), options=[("grpc.so_reuseport", 0)])
    server.add_generic_rpc_handlers([_Package(provider, v).handler() for v in PACKAGES])
    port = server.add_secure_port(address, tls.credentials()) if tls else server.add_insecure_port(address)
    server.start()
    return server, port


def serve(provider, address="127.0.0.1:9001", *, tls=None, max_workers=16, grace=10.0):
    """Serves until SIGTERM or SIGINT, then refuses new calls and lets those in flight finish
    (``grace`` seconds at most). Prints ``listening on <host:port>`` once ready."""
    server, port = start(provider, address, tls=tls, max_workers=max_workers)

    def stop(signum, _frame):
        log.info("signal %d: finishing the calls in flight, then stopping", signum)
        server.stop(grace)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    print(f"listening on {address.rsplit(':', 1)[0]}:{port}", flush=True)
    server.wait_for_termination()
    log.info("stopped")


def main(provider, argv=None):
    """A command line for a provider: ``--listen``, ``--tls-cert``, ``--tls-key``, ``--tls-client-ca``."""
    cli = argparse.ArgumentParser(description=type(provider).__doc__)
    cli.add_argument("--listen", default="127.0.0.1:9001", help="host:port (default %(default)s; port 0: any)")
    cli.add_argument("--tls-cert", help="PEM certificate chain: serve https")
    cli.add_argument("--tls-key", help="PEM private key of --tls-cert")
    cli.add_argument("--tls-client-ca", help="PEM CA: require client certificates it signed")
    args = cli.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    tls = TLS(args.tls_cert, args.tls_key, args.tls_client_ca) if args.tls_cert else None
    serve(provider, args.listen, tls=tls)
