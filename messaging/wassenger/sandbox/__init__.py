"""The Wassenger sandbox: a local stand-in for the API, run by `manage.py wassenger_sandbox`.

    server.py     the HTTP application: the /v1 calls Relance makes, the /sandbox controls,
                  fault injection on sends
    state.py      its configuration, fault shares and record of accepted messages
    webhooks.py   what happens after a message is accepted (acks, replies, failures),
                  posted back to Relance's webhook

It lives beside the client because it plays the same provider: when Wassenger's
documented shapes and the sandbox disagree, the sandbox is the one to change.
"""
