#!/usr/bin/env python3
"""Load a running `wgkv serve` with concurrent clients; print a markdown table.

Each client sends REQUESTS text completions one after another, each with its
own prompt (no two share more than the first token), greedy, MAX_TOKENS long;
the rows are 1, 2, 4, 8 clients (--clients). Aggregate completion tokens/s is
the tokens of every request over the wall time of the row; latency is per
request. The standard library only, so it runs wherever python3 does.

usage: scripts/serve-load.py [--url http://127.0.0.1:8080] [--clients 1,2,4,8]
                             [--requests 4] [--max-tokens 32] [--kv SPEC] [--key KEY]
"""

import argparse
import json
import threading
import time
import urllib.request

WORDS = "amber birch cedar delta ember fjord grove harbor island juniper kestrel lantern meadow nectar orchard".split()


def prompt(client, i):
    a, b = WORDS[client % len(WORDS)], WORDS[(i * 7 + client) % len(WORDS)]
    return f"Story {client}-{i}: the {a} and the {b}. Once upon a time, in a land of {a} trees,"


def complete(args, client, i):
    body = {"prompt": prompt(client, i), "max_tokens": args.max_tokens, "temperature": 0}
    if args.kv:
        body["kv"] = args.kv
    headers = {"Content-Type": "application/json"}
    if args.key:
        headers["Authorization"] = f"Bearer {args.key}"
    req = urllib.request.Request(args.url + "/v1/completions", data=json.dumps(body).encode(), headers=headers)
    t = time.monotonic()
    with urllib.request.urlopen(req, timeout=3600) as r:
        usage = json.load(r)["usage"]
    return usage["completion_tokens"], time.monotonic() - t


def row(args, clients):
    results, lock = [], threading.Lock()

    def run(c):
        for i in range(args.requests):
            out = complete(args, c, i)
            with lock:
                results.append(out)

    t = time.monotonic()
    threads = [threading.Thread(target=run, args=(c,)) for c in range(clients)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    wall = time.monotonic() - t
    tokens = sum(n for n, _ in results)
    lat = sorted(s for _, s in results)
    return len(results) / wall, tokens / wall, lat[len(lat) // 2], lat[-1]


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--url", default="http://127.0.0.1:8080")
    p.add_argument("--clients", default="1,2,4,8")
    p.add_argument("--requests", type=int, default=4)
    p.add_argument("--max-tokens", type=int, default=32)
    p.add_argument("--kv", default=None, help="a per-request KV policy (the server's own by default)")
    p.add_argument("--key", default=None)
    args = p.parse_args()
    print(f"| clients | requests/s | completion tokens/s | × 1 client | median latency s | max latency s |  (kv {args.kv or 'server default'})")
    print("|---:|---:|---:|---:|---:|---:|")
    base = None
    for n in [int(c) for c in args.clients.split(",")]:
        rps, tps, med, worst = row(args, n)
        base = base or tps
        print(f"| {n} | {rps:.2f} | {tps:.1f} | {tps / base:.2f} | {med:.1f} | {worst:.1f} |", flush=True)


if __name__ == "__main__":
    main()
