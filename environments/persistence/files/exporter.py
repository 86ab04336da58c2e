#!/usr/bin/env python3
"""Metrics exporter for the shop: serves /metrics in the Prometheus text format."""

import argparse
import http.server
import json
import os

parser = argparse.ArgumentParser(description=__doc__)
parser.add_argument("--port", type=int, default=9100)
args = parser.parse_args()
here = os.path.dirname(os.path.abspath(__file__))
with open(os.path.join(here, "state.json")) as f:
    state = json.load(f)


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path != "/metrics":
            self.send_error(404)
            return
        body = (
            "# HELP shop_orders_total Orders since the last restart.\n"
            "# TYPE shop_orders_total counter\n"
            f"shop_orders_total {state['orders']}\n"
            "shop_up 1\n"
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; version=0.0.4")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *a):
        pass


print(f"exporter listening on 127.0.0.1:{args.port}", flush=True)
http.server.HTTPServer(("127.0.0.1", args.port), Handler).serve_forever()
