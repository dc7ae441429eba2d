// ioredis against a Cleave router, with the client's default settings (its ready check sends
// INFO). Run by e2e/tests/redis_clients.rs: `node check_ioredis.js HOST:PORT PREFIX`.
// Connects, writes, reads, pipelines, moves a 5 MiB value, checks the types ioredis returns
// and the errors bad input gets. Prints `ok` and exits 0, or exits 1 with the failure.
"use strict";

const assert = require("node:assert/strict");
const Redis = require("ioredis");

const [addr, prefix] = process.argv.slice(2);
const [host, port] = [addr.slice(0, addr.lastIndexOf(":")), Number(addr.slice(addr.lastIndexOf(":") + 1))];

async function expectError(promise, ...needles) {
  try {
    await promise;
  } catch (e) {
    for (const n of needles) assert.ok(String(e.message).includes(n), `${n} not in ${e.message}`);
    return;
  }
  assert.fail("no error");
}

async function main() {
  const r = new Redis({ host, port, connectTimeout: 10000, commandTimeout: 30000, maxRetriesPerRequest: 1 });
  assert.equal(await r.ping(), "PONG");
  assert.equal(await r.echo("hi"), "hi");
  assert.equal(await r.client("SETNAME", "node-check"), "OK");
  assert.equal(await r.client("GETNAME"), "node-check");
  assert.match(await r.info("server"), /cleave_server:cleave-router/);
  assert.ok((await r.command("COUNT")) >= 20);

  const key = `${prefix}/hello.txt`;
  assert.equal(await r.set(key, "world"), "OK");
  assert.equal(await r.get(key), "world");
  assert.equal(await r.get(`${prefix}/missing`), null);
  assert.equal(await r.exists(key, `${prefix}/missing`), 1);
  assert.equal(await r.strlen(key), 5);
  assert.equal(await r.getrange(key, -3, -1), "rld");
  const seq = await r.call("INSERT", `${prefix}/native`, "n");
  assert.equal(typeof seq, "number");
  const stat = await r.call("STAT", key);
  assert.deepEqual(stat.slice(0, 4), ["kind", "file", "size", 5]);

  const p = r.pipeline();
  for (let i = 0; i < 50; i++) p.set(`${prefix}/p/${i}`, `v${i}`);
  for (let i = 0; i < 50; i++) p.get(`${prefix}/p/${i}`);
  p.del(...Array.from({ length: 25 }, (_, i) => `${prefix}/p/${i}`), `${prefix}/p/none`);
  const out = await p.exec();
  for (const [err] of out) assert.equal(err, null);
  assert.deepEqual(out.slice(0, 50).map(([, v]) => v), Array(50).fill("OK"));
  assert.deepEqual(out.slice(50, 100).map(([, v]) => v), Array.from({ length: 50 }, (_, i) => `v${i}`));
  assert.equal(out[100][1], 25);

  const big = Buffer.alloc(5 * 1024 * 1024);
  for (let i = 0; i < big.length; i++) big[i] = i % 251;
  assert.equal(await r.set(`${prefix}/big`, big), "OK");
  const back = await r.getBuffer(`${prefix}/big`);
  assert.ok(Buffer.isBuffer(back) && back.equals(big), "5 MiB round trip");
  assert.equal(await r.strlen(`${prefix}/big`), big.length);
  assert.equal(await r.del(`${prefix}/big`, key), 2);

  await expectError(r.get("foo"), "BADPATH", "absolute paths like /bucket/key");
  await expectError(r.set(`${prefix}/x`, "v", "EX", 10), "not supported");
  await expectError(r.call("HELLO", "4"), "NOPROTO");
  await expectError(r.dbsize(), "LIST");
  assert.equal(await r.ping(), "PONG");
  await r.quit();
  console.log("ok");
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
