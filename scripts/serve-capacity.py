#!/usr/bin/env python3
"""How many long conversations a running `wgkv serve` keeps within its --kv-memory.

Sends COUNT conversations of about TOKENS tokens each (distinct from their
first word: slices of a text file at different offsets), one after another,
each as a text completion of one token under the KV policy KV, then reads
/metrics: conversations cached, evictions, KV bytes resident, and the bytes
of each parked conversation. The standard library only.

usage: scripts/serve-capacity.py --kv SPEC [--url http://127.0.0.1:8080]
       [--count 8] [--tokens 2000] [--text tests/reference/smollm2-135m/ppl.txt]
"""

import argparse
import json
import re
import time
import urllib.request


def post(url, body):
    req = urllib.request.Request(url + "/v1/completions", data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=3600) as r:
        return json.load(r)


def metrics(url):
    with urllib.request.urlopen(url + "/metrics", timeout=60) as r:
        return r.read().decode()


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--url", default="http://127.0.0.1:8080")
    p.add_argument("--kv", required=True)
    p.add_argument("--count", type=int, default=8)
    p.add_argument("--tokens", type=int, default=2000)
    p.add_argument("--text", default="tests/reference/smollm2-135m/ppl.txt")
    args = p.parse_args()
    words = open(args.text, encoding="utf-8").read().split()
    # About 1.3 tokens per English word for these tokenizers.
    n_words = int(args.tokens / 1.3)
    t0 = time.monotonic()
    for i in range(args.count):
        start = (i * 331) % max(1, len(words) - n_words)
        prompt = f"Document {i}. " + " ".join(words[start : start + n_words])
        u = post(args.url, {"prompt": prompt, "max_tokens": 1, "temperature": 0, "kv": args.kv})["usage"]
        print(f"conversation {i}: {u['prompt_tokens']} prompt tokens ({u['prompt_tokens_details']['cached_tokens']} cached)", flush=True)
    m = metrics(args.url)

    def value(name):
        return float(re.search(rf"^{name} (\S+)$", m, re.M).group(1))

    parked = [float(v) for v in re.findall(r'^wgkv_conversation_kv_bytes\{[^}]*place="host"[^}]*\} (\S+)$', m, re.M)]
    print(f"kv {args.kv}: {int(value('wgkv_conversations_cached'))} of {args.count} conversations cached, "
          f"{int(value('wgkv_kv_cache_evictions_total'))} evicted; resident {value('wgkv_kv_bytes_resident') / 2**20:.1f} MiB "
          f"of {value('wgkv_kv_bytes_limit') / 2**20:.1f} MiB (free GPU caches {value('wgkv_kv_bytes_free') / 2**20:.1f} MiB); "
          f"parked conversation {sum(parked) / max(1, len(parked)) / 2**20:.2f} MiB on average; {time.monotonic() - t0:.0f} s")


if __name__ == "__main__":
    main()
