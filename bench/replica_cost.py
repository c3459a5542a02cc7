"""What one more simulator replica costs in the stack: CPU per request, series, spans, memory.

docs/scaling.md sizes the stack from these figures, so they are measured the way the stack
runs, on loopback: two ``failure-lab simulator`` processes with Redis (cache, rate limits,
failure config) and spans exported over OTLP to a real Jaeger (the pinned build of ``make
backends``, the repository's jaeger/config.yaml), behind HAProxy with the repository's
haproxy.cfg (found by dnsmasq, as in tests/stack/test_load_balancer.py). Replica A runs the
traffic generator and sends through HAProxy to replica B alone, so B's figures are a serving
replica's and A's are the generator's. Each rate runs ``--seconds`` with the generator's mix
(default payload: cache on, no rate limit; the default failure config), then:

- CPU per request of B, A, HAProxy, Redis and Jaeger (user + system, /proc), over the
  requests B counted (``failure_lab_http_requests_total``);
- spans per request, from Jaeger's own ``otelcol_receiver_accepted_spans`` (A and B both
  export; the generator's sends are not spans of their own);
- series per replica: the samples of one scrape of B's and of A's /metrics, and HAProxy's;
- memory: B's and A's resident set at the end of the run, and its peak (VmRSS, VmHWM).

    .venv/bin/python bench/replica_cost.py [--rates 100 400] [--seconds 20]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import cpu_seconds
from tests.support.haproxy import DnsServer, HAProxyProcess
from tests.support.jaeger import JaegerProcess
from tests.support.replicas import SimulatorProcess, port_free_on, replica_address
from tests.support.servers import RedisProcess

PAYLOAD: dict[str, Any] = {
    "rate_of_requests": 100,
    "number_of_requests": 1,
    "retries_enabled": True,
    "rate_limiting": 0,
    "rate_limiting_algo": "token_bucket",
    "cache_enabled": True,
    "cache_ttl": 30,
    "db_latency": 0,
}


def samples_of(text: str, prefix: str = "") -> dict[str, float]:
    """Every sample line of an exposition (name with labels -> value)."""
    found = {}
    for line in text.splitlines():
        if line and not line.startswith("#") and line.startswith(prefix):
            key, _, value = line.rpartition(" ")
            found[key] = float(value)
    return found


def total(text: str, name: str) -> float:
    return sum(v for k, v in samples_of(text, name).items() if k.split("{")[0] == name)


def memory_mib(pid: int) -> tuple[float, float]:
    """(VmRSS, VmHWM) in MiB."""
    fields = dict(
        line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
    )
    return (
        int(fields["VmRSS"].split()[0]) / 1024,
        int(fields["VmHWM"].split()[0]) / 1024,
    )


async def measure(rates: list[float], seconds: float) -> None:
    with tempfile.TemporaryDirectory(prefix="replica-cost-") as tmp:
        workdir = Path(tmp)
        addresses = [replica_address(0), replica_address(1)]
        port = port_free_on(addresses)
        redis = RedisProcess(workdir)
        jaeger = JaegerProcess(workdir)
        dns = DnsServer(workdir, [addresses[1]])  # HAProxy sends to B only
        haproxy = HAProxyProcess(workdir, dns.address, port)
        base_env = {
            k: v for k, v in os.environ.items() if not k.startswith(("FAILURE_LAB_", "OTEL_"))
        }
        redis.start()
        dns.start()
        await jaeger.start()
        env = {
            **base_env,
            "FAILURE_LAB_REDIS_URL": redis.url,
            "FAILURE_LAB_TARGET_URL": haproxy.url,
            "FAILURE_LAB_CONTROL_RATE_LIMIT": "0",
            "FAILURE_LAB_ALLOWED_HOSTS": ",".join(["localhost", "127.0.0.1", *addresses]),
            "OTEL_EXPORTER_OTLP_ENDPOINT": jaeger.otlp_url,
        }
        generator, server = (SimulatorProcess(workdir, a, port, env) for a in addresses)
        try:
            for replica in (generator, server):
                replica.spawn()
            for replica in (generator, server):
                await asyncio.to_thread(replica.wait_ready)
            await asyncio.to_thread(haproxy.start)
            await asyncio.sleep(3)  # DNS resolved, B's health check passed
            jaeger_metrics = f"http://127.0.0.1:{jaeger.ports['metrics']}/metrics"
            pids = {
                "replica B (serves)": server.pid,
                "replica A (generator)": generator.pid,
                "HAProxy": haproxy.pid,
                "Redis": redis.pid,
                "Jaeger": jaeger.pid,
            }
            async with httpx.AsyncClient(timeout=30) as client:
                for rate in rates:
                    served_before = total(
                        (await client.get(f"{server.url}/metrics")).text,
                        "failure_lab_http_requests_total",
                    )
                    spans_before = total(
                        (await client.get(jaeger_metrics)).text,
                        "otelcol_receiver_accepted_spans_total",
                    )
                    cpu_before = {name: cpu_seconds(pid) for name, pid in pids.items()}
                    answer = await client.post(
                        f"{generator.url}/v1/traffic/generate",
                        json={
                            "mode": "sustained",
                            "rps": rate,
                            "duration": seconds,
                            "payload": {**PAYLOAD, "rate_of_requests": rate},
                        },
                    )
                    answer.raise_for_status()
                    await asyncio.sleep(seconds + 3)  # the last spans batched and exported
                    cpu = {name: cpu_seconds(pid) - cpu_before[name] for name, pid in pids.items()}
                    server_text = (await client.get(f"{server.url}/metrics")).text
                    generator_text = (await client.get(f"{generator.url}/metrics")).text
                    served = total(server_text, "failure_lab_http_requests_total") - served_before
                    spans = (
                        total(
                            (await client.get(jaeger_metrics)).text,
                            "otelcol_receiver_accepted_spans_total",
                        )
                        - spans_before
                    )
                    print(f"\n{rate:g} req/s for {seconds:g} s: {served:.0f} requests served by B")
                    print("| process | CPU us/request | cores at this rate |")
                    print("|---|---:|---:|")
                    for name, used in cpu.items():
                        print(f"| {name} | {used / served * 1e6:.0f} | {used / seconds:.3f} |")
                    print(f"spans per request (Jaeger accepted): {spans / served:.2f}")
                    for name, replica, text in (
                        ("B", server, server_text),
                        ("A", generator, generator_text),
                    ):
                        rss, peak = memory_mib(replica.pid)
                        print(
                            f"replica {name}: {len(samples_of(text))} series in /metrics, "
                            f"RSS {rss:.0f} MiB (peak {peak:.0f} MiB)"
                        )
                    print(f"HAProxy: {len(samples_of(haproxy.metrics()))} series in /metrics")
        finally:
            for stop in (generator.stop, server.stop, haproxy.stop, dns.stop, jaeger.kill):
                stop()
            redis.kill()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rates", type=float, nargs="+", default=[100.0, 400.0])
    parser.add_argument("--seconds", type=float, default=20.0)
    args = parser.parse_args()
    asyncio.run(measure(args.rates, args.seconds))


if __name__ == "__main__":
    main()
