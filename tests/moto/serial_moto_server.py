"""moto_server answering one request at a time.

moto's threaded server does not serialise conditional writes to one
DynamoDB item (two concurrent `ConditionExpression` updates can both
succeed), where DynamoDB itself makes each write atomic. The tests race
writers on purpose (claims, limits, concurrent inserts), so the emulator
must keep DynamoDB's guarantee: one request at a time. Same arguments as
`moto_server`.
"""

import moto.server as server

_run_simple = server.run_simple


def _serial_run_simple(*args, **kwargs):
    kwargs["threaded"] = False
    return _run_simple(*args, **kwargs)


server.run_simple = _serial_run_simple

if __name__ == "__main__":
    server.main()
