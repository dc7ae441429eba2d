"""redis-py against a Cleave router, with the client's default settings.

Run by e2e/tests/redis_clients.rs: `python check_redis_py.py HOST:PORT PROTOCOL PREFIX`, where
PROTOCOL is `default` (redis-py 8 opens with HELLO 3) or `2`, and PREFIX a root such as /py3.
Connects, writes, reads, pipelines, moves a 5 MiB value, checks the types redis-py returns and
the errors bad input gets. Prints `ok` and exits 0, or raises (the Rust test shows the trace).
"""

import sys

import redis

addr, protocol, prefix = sys.argv[1], sys.argv[2], sys.argv[3]
host, port = addr.rsplit(":", 1)
kwargs = {"host": host, "port": int(port), "socket_timeout": 30, "socket_connect_timeout": 10}
if protocol != "default":
    kwargs["protocol"] = int(protocol)
r = redis.Redis(**kwargs)
resp3 = protocol == "default"


def expect_error(fn, *needles):
    """fn() must raise a redis error whose text contains every needle; the connection lives on."""
    try:
        fn()
    except redis.exceptions.ResponseError as e:
        for n in needles:
            assert n in str(e), f"{n!r} not in {e!r}"
        return
    raise AssertionError(f"no error from {fn}")


# Connect and handshake (HELLO 3 for the default, CLIENT SETINFO, ...).
assert r.ping() is True
assert redis.__version__.startswith("8."), redis.__version__
hello = r.execute_command("HELLO")
if not resp3:  # RESP2: a flat list of pairs
    hello = dict(zip(hello[::2], hello[1::2]))
assert hello[b"proto"] == (3 if resp3 else 2), hello
assert hello[b"server"] == b"cleave-router", hello
assert r.echo("hi") == b"hi"
assert r.client_setname("py-check") is True
assert r.client_getname() == "py-check"  # redis-py decodes the name
assert isinstance(r.client_id(), int)
info = r.info()
assert info["cleave_server"] == "cleave-router", info
assert info["role"] == "master"
assert "total_commands_processed" in r.info("stats")
assert r.command_count() >= 20
assert r.command()["get"]["first_key_pos"] == 1
expect_error(r.dbsize, "LIST")

# Write and read.
key = f"{prefix}/hello.txt"
assert r.set(key, "world") is True
assert r.get(key) == b"world"
assert r.get(f"{prefix}/missing") is None
assert r.exists(key, f"{prefix}/missing") == 1
assert r.strlen(key) == 5
assert r.strlen(f"{prefix}/missing") == 0
assert r.getrange(key, 1, 3) == b"orl"
assert r.getrange(key, -3, -1) == b"rld"
assert r.getrange(f"{prefix}/missing", 0, 10) == b""
seq = r.execute_command("INSERT", f"{prefix}/native", "n")
assert isinstance(seq, int) and seq > 0, seq
stat = r.execute_command("STAT", key)
if resp3:
    assert isinstance(stat, dict) and stat[b"size"] == 5, stat
else:
    assert isinstance(stat, list) and stat[:4] == [b"kind", b"file", b"size", 5], stat

# Pipeline (no MULTI: Cleave has no transactions).
p = r.pipeline(transaction=False)
for i in range(50):
    p.set(f"{prefix}/p/{i}", f"v{i}")
for i in range(50):
    p.get(f"{prefix}/p/{i}")
p.delete(*[f"{prefix}/p/{i}" for i in range(25)], f"{prefix}/p/none")
p.exists(*[f"{prefix}/p/{i}" for i in range(50)])
out = p.execute()
assert out[:50] == [True] * 50, out[:50]
assert out[50:100] == [f"v{i}".encode() for i in range(50)], out[50:100]
assert out[100] == 25 and out[101] == 25, out[100:]

# A large value: 5 MiB.
big = bytes(range(256)) * (5 * 1024 * 4)
assert len(big) == 5 * 1024 * 1024
assert r.set(f"{prefix}/big", big) is True
assert r.get(f"{prefix}/big") == big
assert r.strlen(f"{prefix}/big") == len(big)
assert r.getrange(f"{prefix}/big", -2, -1) == big[-2:]
assert r.delete(f"{prefix}/big", key) == 2
assert r.get(f"{prefix}/big") is None

# Bad input: a clear error, the connection stays usable.
expect_error(lambda: r.get("foo"), "BADPATH", "absolute paths like /bucket/key")
expect_error(lambda: r.set("foo", "x"), "BADPATH")
expect_error(lambda: r.set(f"{prefix}/x", "v", ex=10), "not supported")
expect_error(lambda: r.getrange(f"{prefix}/x", "a", 1), "integer")
expect_error(lambda: r.execute_command("HELLO", 4), "NOPROTO")
expect_error(lambda: r.execute_command("CLIENT", "KILL", "x"), "not supported")
expect_error(lambda: r.execute_command("GET"), "missing")
assert r.ping() is True
print("ok")
