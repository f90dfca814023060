#!/usr/bin/env python3
"""Opens N idle SMTP connections to a fresh sluice and reports its RSS before
and after (each connection has had its greeting and an EHLO, then sits idle).
Usage: idle_conns.py SLUICE_BIN N"""
import os, resource, socket, subprocess, sys, tempfile, time

def rss_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0

def main():
    binary, n = sys.argv[1], int(sys.argv[2])
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = n + 1000
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(want, hard) if hard > 0 else want, hard))
    data = tempfile.mkdtemp(prefix="sluice-idle-")
    cfg = os.path.join(data, "sluice.toml")
    with open(cfg, "w") as f:
        f.write(f"[smtp]\nmax_connections = {n + 100}\nmax_connections_per_ip = {n + 100}\n")
    proc = subprocess.Popen([binary, "serve", "--config", cfg, "--data", data, "--smtp", "127.0.0.1:0",
                             "--submission", "127.0.0.1:0", "--accept-domain", "example.test"],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                            preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (want, want)))
    line = proc.stdout.readline()
    port = int(line.split("smtp=")[1].split()[0].rsplit(":", 1)[1])
    time.sleep(0.5)
    before = rss_kb(proc.pid)
    socks = []
    try:
        for i in range(n):
            s = socket.create_connection(("127.0.0.1", port), timeout=10)
            socks.append(s)
        for s in socks:
            s.recv(512)
            s.sendall(b"EHLO idle.test\r\n")
        for s in socks:
            s.recv(4096)
        time.sleep(1.0)
        after = rss_kb(proc.pid)
        print(f"sluice RSS: {before} KiB before, {after} KiB with {n} idle connections "
              f"({(after - before) * 1024 / n:.0f} bytes per connection)")
    finally:
        for s in socks:
            s.close()
        proc.terminate()
        proc.wait(timeout=30)

if __name__ == "__main__":
    main()
