"""Example provider: a deny-list authenticator and a topic rewriter.

    python examples/deny_and_rewrite.py --listen 127.0.0.1:9001

* client.authenticate: usernames in DENIED are refused, the others allowed.
* message.publish on legacy/#: moved to sensors/<rest>, payload upper-cased; the rest of the
  message (id, from, qos, headers) is echoed as it came.
* client.connected: logged (a notification: answered as soon as the method returns).
It does not implement client.authorize, so it does not register it and is never asked.
"""

import logging

from exhook_provider import Provider, allow, deny, main, rewrite

log = logging.getLogger("example")


class DenyAndRewrite(Provider):
    """Deny-list authenticator and legacy/# -> sensors/# rewriter."""

    DENIED = {"mallory", "eve"}
    topics = ["legacy/#"]  # message_publish sees only these topics

    def client_authenticate(self, request):
        if request.clientinfo.username in self.DENIED:
            return deny()
        return allow()

    def message_publish(self, request):
        message = request.message
        topic = "sensors/" + message.topic.removeprefix("legacy/")
        return rewrite(message).topic(topic).payload(message.payload.upper())

    def client_connected(self, request):
        log.info("connected: %s", request.clientinfo.clientid)


if __name__ == "__main__":
    main(DenyAndRewrite())
