#!/usr/bin/env python3
"""Cold-start probe: runs a Lambda bootstrap against a stand-in Lambda runtime
API on a free loopback port, sends it the events given, and prints init time
(process start -> first /next), each event's answer time, and the peak RSS.

    lambda-probe.py BOOTSTRAP EVENT.json [EVENT.json ...]   (env passes through)
"""
import http.server, json, os, socket, subprocess, sys, threading, time

events = [open(p).read() for p in sys.argv[2:]]
marks = {"next": [], "response": []}
answers = []
done = threading.Event()

class Runtime(http.server.BaseHTTPRequestHandler):
    def log_message(self, *a):
        pass
    def do_GET(self):
        marks["next"].append(time.monotonic())
        i = len(marks["next"]) - 1
        if i >= len(events):
            done.set()
            time.sleep(5)
            return
        body = events[i].encode()
        self.send_response(200)
        self.send_header("Lambda-Runtime-Aws-Request-Id", f"req-{i}")
        self.send_header("Lambda-Runtime-Deadline-Ms", str(int(time.time() * 1000) + 60_000))
        self.send_header("Lambda-Runtime-Invoked-Function-Arn", "arn:aws:lambda:us-east-1:1:function:probe")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def do_POST(self):
        marks["response"].append(time.monotonic())
        n = int(self.headers.get("Content-Length", 0))
        answers.append(self.rfile.read(n).decode(errors="replace"))
        self.send_response(202)
        self.send_header("Content-Length", "0")
        self.end_headers()

server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Runtime)
threading.Thread(target=server.serve_forever, daemon=True).start()
env = dict(os.environ, AWS_LAMBDA_RUNTIME_API=f"127.0.0.1:{server.server_address[1]}",
           AWS_LAMBDA_FUNCTION_NAME="probe", AWS_LAMBDA_FUNCTION_MEMORY_SIZE="512",
           AWS_LAMBDA_FUNCTION_VERSION="1", AWS_LAMBDA_LOG_FORMAT="JSON")
start = time.monotonic()
proc = subprocess.Popen([sys.argv[1]], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
done.wait(60)
hwm = "?"
try:
    for line in open(f"/proc/{proc.pid}/status"):
        if line.startswith("VmHWM"):
            hwm = line.split()[1] + " kB"
except OSError:
    pass
proc.kill()
err = proc.communicate()[1].decode(errors="replace")
if not marks["next"]:
    print("the bootstrap never asked for an event:\n" + err)
    sys.exit(1)
print(f"init (start -> first /next): {(marks['next'][0] - start) * 1000:.1f} ms")
for i, t in enumerate(marks["response"]):
    print(f"event {i}: answered in {(t - marks['next'][i]) * 1000:.1f} ms: {answers[i][:200]}")
print(f"peak RSS (VmHWM): {hwm}")
