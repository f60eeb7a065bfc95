"""Unit tests of the kit: registration, answers, and the three packages served in-process.

    cd sdk/python && python -m unittest discover -s tests -v
(crates/gateway/tests/python_kit.rs runs them with target/python-kit/venv/bin/python.)
"""

import logging
import unittest

import grpc

from exhook_provider import PACKAGES, Provider, allow, deny, ignore, rewrite, start, stop_publish
from exhook_provider._pb import exhook_v1_pb2 as v1, exhook_v2_pb2 as v2, exhook_v3_pb2 as v3

logging.getLogger("exhook_provider").setLevel(logging.CRITICAL)  # the failing hooks below log tracebacks


class Sample(Provider):
    topics = ["legacy/#", "a/+"]
    connected = []

    def client_authenticate(self, request):
        return request.clientinfo.username != "mallory"  # a bool is allow() / deny()

    def client_authorize(self, request):
        return deny() if request.topic.startswith("secret/") else ignore()

    def message_publish(self, request):
        if request.message.topic == "legacy/boom":
            raise RuntimeError("boom")
        return rewrite().topic("new/" + request.message.topic).payload("changed")

    def client_connected(self, request):
        if request.clientinfo.clientid == "boom":
            raise RuntimeError("boom")
        self.connected.append(request.clientinfo.clientid)

    def session_takenover(self, request):
        pass


def message(pb):
    return pb.Message(
        node="emqx@127.0.0.1", id="0005F1A2", qos=1, topic="legacy/t", payload=b"hello", timestamp=17,
        headers={"username": "alice", "peerhost": "127.0.0.1"}, **{"from": "c1"},
    )  # fmt: skip


class Registration(unittest.TestCase):
    def test_overridden_methods_are_registered_in_each_package_spelling(self):
        self.assertEqual(
            Sample().hook_specs(3),
            [
                ("client.authenticate", []),
                ("client.authorize", []),
                ("message.publish", ["legacy/#", "a/+"]),
                ("client.connected", []),
                ("session.takenover", []),
            ],
        )
        self.assertEqual(Sample().hook_specs(2), Sample().hook_specs(3))
        names = [n for n, _ in Sample().hook_specs(1)]
        self.assertEqual(names[1], "client.check_acl")
        self.assertEqual(names[4], "session.takeovered")

    def test_the_base_class_registers_nothing(self):
        self.assertEqual(Provider().registered(), [])

    def test_every_rpc_of_every_package_has_a_method(self):
        for version, pb in PACKAGES.items():
            service = pb.DESCRIPTOR.services_by_name["HookProvider"]
            self.assertEqual(len(service.methods), 21, version)


class Answers(unittest.TestCase):
    def test_bool_answers(self):
        request = v3.ClientAuthenticateRequest()
        for answer, kind, value in [
            (allow(), v3.ValuedResponse.CONTINUE, True),
            (deny(), v3.ValuedResponse.STOP_AND_RETURN, False),
            (allow().stop(), v3.ValuedResponse.STOP_AND_RETURN, True),
            (deny().pass_on(), v3.ValuedResponse.CONTINUE, False),
        ]:
            response = answer.response(v3, request)
            got = (response.type, response.WhichOneof("value"), response.bool_result)
            self.assertEqual(got, (kind, "bool_result", value))
        response = ignore().stop().response(v3, request)
        self.assertEqual((response.type, response.WhichOneof("value")), (v3.ValuedResponse.IGNORE, None))

    def test_rewrite_echoes_the_whole_message(self):
        request = v3.MessagePublishRequest(message=message(v3))
        got = rewrite().topic("sensors/t").payload("HELLO").response(v3, request)
        self.assertEqual(got.type, v3.ValuedResponse.CONTINUE)
        want = message(v3)
        want.topic, want.payload = "sensors/t", b"HELLO"
        self.assertEqual(got.message, want)

    def test_rewrite_of_a_given_message_of_another_package(self):
        got = rewrite(message(v1)).qos(2).header("x", "y").response(v2, v2.MessagePublishRequest())
        self.assertEqual((got.message.id, got.message.qos, got.message.topic), ("0005F1A2", 2, "legacy/t"))
        self.assertEqual(dict(got.message.headers), {"username": "alice", "peerhost": "127.0.0.1", "x": "y"})

    def test_stop_publish(self):
        got = stop_publish().response(v1, v1.MessagePublishRequest(message=message(v1)))
        self.assertEqual(got.type, v1.ValuedResponse.STOP_AND_RETURN)
        self.assertEqual((got.message.topic, got.message.payload), ("legacy/t", b"hello"))
        self.assertEqual(got.message.headers["allow_publish"], "false")


class Served(unittest.TestCase):
    """The three packages on one port, called the way EMQX calls them."""

    @classmethod
    def setUpClass(cls):
        cls.server, port = start(Sample(), "127.0.0.1:0", max_workers=4)
        cls.channel = grpc.insecure_channel(f"127.0.0.1:{port}")

    @classmethod
    def tearDownClass(cls):
        cls.channel.close()
        cls.server.stop(None)

    def call(self, pb, rpc, request, reply):
        path = f"/{pb.DESCRIPTOR.package}.HookProvider/{rpc}"
        serialize = type(request).SerializeToString
        return self.channel.unary_unary(path, request_serializer=serialize, response_deserializer=reply.FromString)(
            request, timeout=5
        )

    def test_loaded_in_each_package(self):
        broker = {1: v1.BrokerInfo(version="4.4.19", uptime="1 hours, 2 minutes"), 2: v2.BrokerInfo(uptime=3723000)}
        broker[3] = v3.BrokerInfo(uptime=3723000)
        for version, pb in PACKAGES.items():
            got = self.call(pb, "OnProviderLoaded", pb.ProviderLoadedRequest(broker=broker[version]), pb.LoadedResponse)
            want = [pb.HookSpec(name=n, topics=t) for n, t in Sample().hook_specs(version)]
            self.assertEqual(list(got.hooks), want, version)
            self.call(pb, "OnProviderUnloaded", pb.ProviderUnloadedRequest(), pb.EmptySuccess)

    def test_valued_and_notification_hooks_in_each_package(self):
        for version, pb in PACKAGES.items():
            authorize_rpc = "OnClientCheckAcl" if version == 1 else "OnClientAuthorize"
            authorize = v1.ClientCheckAclRequest if version == 1 else pb.ClientAuthorizeRequest
            mallory = pb.ClientAuthenticateRequest(clientinfo=pb.ClientInfo(username="mallory", password="pw"))
            got = self.call(pb, "OnClientAuthenticate", mallory, pb.ValuedResponse)
            self.assertEqual((got.type, got.bool_result), (pb.ValuedResponse.STOP_AND_RETURN, False))
            got = self.call(pb, authorize_rpc, authorize(topic="secret/x", type=1), pb.ValuedResponse)
            self.assertEqual((got.type, got.bool_result), (pb.ValuedResponse.STOP_AND_RETURN, False))
            got = self.call(pb, authorize_rpc, authorize(topic="public/x"), pb.ValuedResponse)
            self.assertEqual(got.type, pb.ValuedResponse.IGNORE)
            got = self.call(pb, "OnMessagePublish", pb.MessagePublishRequest(message=message(pb)), pb.ValuedResponse)
            want = ("new/legacy/t", b"changed", "0005F1A2")
            self.assertEqual((got.message.topic, got.message.payload, got.message.id), want)
            connected = pb.ClientConnectedRequest(clientinfo=pb.ClientInfo(clientid=f"c{version}"))
            self.call(pb, "OnClientConnected", connected, pb.EmptySuccess)
            self.assertIn(f"c{version}", Sample.connected)
            # A hook the class does not implement (not registered) is acknowledged if called anyway.
            self.call(pb, "OnMessageAcked", pb.MessageAckedRequest(), pb.EmptySuccess)

    def test_a_failing_valued_hook_is_an_error_and_a_failing_notification_is_acknowledged(self):
        for pb in PACKAGES.values():
            with self.assertRaises(grpc.RpcError) as failed:
                boom = pb.MessagePublishRequest(message=pb.Message(topic="legacy/boom"))
                self.call(pb, "OnMessagePublish", boom, pb.ValuedResponse)
            self.assertEqual(failed.exception.code(), grpc.StatusCode.INTERNAL)
            boom = pb.ClientConnectedRequest(clientinfo=pb.ClientInfo(clientid="boom"))
            self.call(pb, "OnClientConnected", boom, pb.EmptySuccess)

    def test_an_unknown_package_is_unimplemented(self):
        with self.assertRaises(grpc.RpcError) as failed:
            method = self.channel.unary_unary("/emqx.exhook.v9.HookProvider/OnProviderLoaded")
            method(b"", timeout=5)
        self.assertEqual(failed.exception.code(), grpc.StatusCode.UNIMPLEMENTED)


if __name__ == "__main__":
    unittest.main()
