"""Tests of tools/model-server/model-server.py, keel's scripted OpenAI-compatible stand-in.

Standard library only. Each server under test is a subprocess on a free port (--port 0) in a
temporary directory, with an extra scenarios directory written here; it is killed at the end.
Run with tests/model-server/run-tests.
"""

import http.client
import json
import math
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import unittest
import unittest.mock
import urllib.error
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SERVER = REPO / "tools" / "model-server" / "model-server.py"
RUN = REPO / "tools" / "model-server" / "run"
DEFAULT_SCENARIOS = REPO / "tools" / "model-server" / "scenarios"
KEY = "sk-keel-test-9f8e7d6c5b4a"

TEST_RULES = {
    "description": "rules written by tests/model-server/test_model_server.py",
    "rules": [
        {"name": "t-last-user", "when": {"last_user_contains": "zebra-last"},
         "reply": {"content": "matched last_user_contains"}},
        {"name": "t-any", "when": {"any_contains": "giraffe-any"},
         "reply": {"content": "matched any_contains"}},
        {"name": "t-system", "when": {"system_contains": "okapi-system"},
         "reply": {"content": "matched system_contains"}},
        {"name": "t-format", "when": {"response_format": "quote_extract"},
         "reply": {"json": {"vendor": "Acme GmbH", "total": 1250.5, "lines": [1, 2]}}},
        {"name": "t-tool", "when": {"tool_available": "lookup_vendor", "last_role": "user"},
         "reply": {"content": "Looking it up.",
                   "tool_calls": [{"name": "lookup_vendor", "arguments": {"vendor_id": "V-1"}},
                                  {"name": "lookup_vendor", "arguments": "{\"vendor_id\":\"V-2\"}"}]}},
        {"name": "t-last-role", "when": {"any_contains": "lastrole-marker", "last_role": "assistant"},
         "reply": {"content": "matched last_role"}},
        {"name": "t-tool-result", "when": {"last_tool_result_contains": "approved-42"},
         "reply": {"content": "matched last_tool_result_contains"}},
        {"name": "t-at-least", "when": {"any_contains": "count-marker", "tool_results_at_least": 2},
         "reply": {"content": "two or more tool results"}},
        {"name": "t-less-than", "when": {"any_contains": "count-marker", "tool_results_less_than": 2},
         "reply": {"content": "fewer than two tool results"}},
        {"name": "t-model", "when": {"any_contains": "model-marker", "model": "keel-scripted-large"},
         "reply": {"content": "matched model"}},
        {"name": "t-first-wins", "when": {"any_contains": "order-marker"},
         "reply": {"content": "first rule"}},
        {"name": "t-second-loses", "when": {"any_contains": "order-marker"},
         "reply": {"content": "second rule"}},
        {"name": "t-only-by-name", "when": {"any_contains": "text nobody sends 5c1d"},
         "reply": {"content": "chosen by reply=", "finish_reason": "stop"}},
        {"name": "t-long", "when": {"any_contains": "long-marker"},
         "reply": {"content": "abcdefghij" * 10}},
    ],
}


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServerProcess:
    """model-server.py on a free port; log in DIR/server.log."""

    def __init__(self, directory, scenario_dirs, env_extra=None):
        self.dir = Path(directory)
        self.log_path = self.dir / "server.log"
        port_file = self.dir / "port"
        env = {k: v for k, v in os.environ.items() if k != "KEEL_MODEL_SERVER_KEY"}
        env.update(env_extra or {})
        args = [sys.executable, str(SERVER), "--port", "0", "--port-file", str(port_file)]
        for d in scenario_dirs:
            args += ["--scenarios", str(d)]
        self.log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(args, stdout=self.log, stderr=subprocess.STDOUT, env=env)
        deadline = time.monotonic() + 10
        while not port_file.exists():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("model server did not start: " + self.log_path.read_text())
            time.sleep(0.02)
        self.port = int(port_file.read_text())
        self.base = f"http://127.0.0.1:{self.port}"

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


def request(base, method, path, body=None, headers=None, timeout=5):
    """(status, headers, body bytes); body may be a dict (sent as JSON) or bytes."""
    data = body if isinstance(body, (bytes, type(None))) else json.dumps(body).encode()
    req = urllib.request.Request(base + path, data=data, method=method, headers=headers or {})
    if data is not None and "Content-Type" not in (headers or {}):
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, resp.headers, resp.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read()


def user(text):
    return [{"role": "user", "content": text}]


def valid(value, schema, root):
    """A small structural check of value against schema (the subset the fallback generates)."""
    if "$ref" in schema:
        node = root
        for part in schema["$ref"][2:].split("/"):
            node = node[part]
        return valid(value, node, root)
    if "enum" in schema:
        return value in schema["enum"]
    kinds = schema.get("type")
    kinds = kinds if isinstance(kinds, list) else [kinds]
    checks = {
        "object": lambda v: isinstance(v, dict),
        "array": lambda v: isinstance(v, list),
        "string": lambda v: isinstance(v, str),
        "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
        "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
        "boolean": lambda v: isinstance(v, bool),
        "null": lambda v: v is None,
    }
    if not any(checks[k](value) for k in kinds):
        return False
    if isinstance(value, dict):
        props = schema.get("properties", {})
        if any(k not in value for k in schema.get("required", [])):
            return False
        return all(valid(v, props[k], root) for k, v in value.items() if k in props)
    if isinstance(value, list):
        return len(value) >= schema.get("minItems", 0) and all(
            valid(v, schema.get("items", {}), root) for v in value)
    if isinstance(value, str):
        return len(value) >= schema.get("minLength", 0)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if "minimum" in schema and value < schema["minimum"]:
            return False
        if "exclusiveMinimum" in schema and value <= schema["exclusiveMinimum"]:
            return False
    return True


class Base(unittest.TestCase):
    tmp = None
    server = None

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="keel-model-server-test-")
        scenarios = Path(cls.tmp) / "scenarios"
        scenarios.mkdir()
        (scenarios / "50-tests.json").write_text(json.dumps(TEST_RULES, indent=1))
        cls.server = ServerProcess(cls.tmp, [DEFAULT_SCENARIOS, scenarios], cls.env())

    @classmethod
    def env(cls):
        return {}

    @classmethod
    def tearDownClass(cls):
        cls.server.stop()
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def call(self, method, path, body=None, headers=None, timeout=5):
        return request(self.server.base, method, path, body, headers, timeout)

    def chat(self, messages, expect=200, **fields):
        status, headers, body = self.call("POST", "/v1/chat/completions",
                                          {"model": fields.pop("model", "keel-scripted-small"),
                                           "messages": messages, **fields})
        self.assertEqual(status, expect, body)
        self.assertTrue(headers["x-request-id"].startswith("req_scripted_"))
        return json.loads(body), headers

    def content(self, messages, **fields):
        doc, _ = self.chat(messages, **fields)
        return doc["choices"][0]["message"]["content"]

    def assert_error(self, status, body, expect_status, type_, code=None):
        self.assertEqual(status, expect_status, body)
        err = json.loads(body)["error"]
        self.assertEqual(set(err), {"message", "type", "param", "code"})
        self.assertEqual(err["type"], type_)
        self.assertEqual(err["code"], code)
        self.assertIsInstance(err["message"], str)
        return err


class Endpoints(Base):
    def test_models(self):
        status, headers, body = self.call("GET", "/v1/models")
        self.assertEqual(status, 200)
        self.assertTrue(headers["x-request-id"].startswith("req_scripted_"))
        doc = json.loads(body)
        self.assertEqual(doc["object"], "list")
        self.assertEqual([m["id"] for m in doc["data"]],
                         ["keel-scripted-small", "keel-scripted-large"])
        for m in doc["data"]:
            self.assertEqual(m, {"id": m["id"], "object": "model", "created": 0,
                                 "owned_by": "keel-offline-scripted"})

    def test_healthz_and_unknown_paths(self):
        status, headers, body = self.call("GET", "/healthz")
        self.assertEqual((status, body), (200, b"ok"))
        self.assertIn("x-request-id", headers)
        status, _, body = self.call("GET", "/v1/nope")
        self.assert_error(status, body, 404, "invalid_request_error")

    def test_response_shape_usage_and_ids(self):
        messages = [{"role": "system", "content": "You are terse."},
                    {"role": "user", "content": [{"type": "text", "text": "zebra-last please"}]}]
        doc, headers = self.chat(messages)
        n = headers["x-request-id"].removeprefix("req_scripted_")
        self.assertEqual(doc["id"], f"chatcmpl-scripted-{n}")
        self.assertEqual(doc["object"], "chat.completion")
        self.assertEqual(doc["model"], "scripted:keel-scripted-small")
        self.assertEqual(doc["system_fingerprint"], "keel-offline-scripted")
        self.assertLessEqual(abs(doc["created"] - time.time()), 60)
        choice = doc["choices"][0]
        self.assertEqual(choice["index"], 0)
        self.assertEqual(choice["finish_reason"], "stop")
        self.assertEqual(choice["message"], {"role": "assistant",
                                             "content": "matched last_user_contains",
                                             "refusal": None})
        prompt = math.ceil((len("You are terse.") + len("zebra-last please")) / 4)
        done = math.ceil(len("matched last_user_contains") / 4)
        self.assertEqual(doc["usage"], {"prompt_tokens": prompt, "completion_tokens": done,
                                        "total_tokens": prompt + done,
                                        "prompt_tokens_details": {"cached_tokens": 0}})

    def test_keep_alive(self):
        conn = http.client.HTTPConnection("127.0.0.1", self.server.port, timeout=5)
        try:
            for _ in range(3):
                body = json.dumps({"model": "m", "messages": user("zebra-last")})
                conn.request("POST", "/v1/chat/completions", body,
                             {"Content-Type": "application/json"})
                resp = conn.getresponse()
                self.assertEqual(resp.status, 200)
                self.assertEqual(resp.version, 11)
                json.loads(resp.read())
        finally:
            conn.close()


class Scenarios(Base):
    def test_last_user_contains_is_case_insensitive(self):
        self.assertEqual(self.content(user("Please ZEBRA-Last now")), "matched last_user_contains")
        # only the last user message counts
        messages = user("zebra-last") + [{"role": "assistant", "content": "ok"}] + user("other")
        self.assertNotEqual(self.content(messages), "matched last_user_contains")

    def test_any_contains(self):
        messages = [{"role": "assistant", "content": "a giraffe-any here"}] + user("next")
        self.assertEqual(self.content(messages), "matched any_contains")

    def test_system_contains(self):
        for role in ("system", "developer"):
            messages = [{"role": role, "content": "You are okapi-system."}] + user("hi there")
            self.assertEqual(self.content(messages), "matched system_contains")
        self.assertNotEqual(self.content(user("okapi-system")), "matched system_contains")

    def test_response_format(self):
        fmt = {"type": "json_schema",
               "json_schema": {"name": "quote_extract", "strict": True,
                               "schema": {"type": "object"}}}
        text = self.content(user("extract"), response_format=fmt)
        self.assertEqual(text, '{"vendor":"Acme GmbH","total":1250.5,"lines":[1,2]}')

    def test_tool_available_and_tool_calls(self):
        tools = [{"type": "function", "function": {"name": "lookup_vendor", "parameters": {
            "type": "object", "properties": {"vendor_id": {"type": "string"}}}}}]
        doc, headers = self.chat(user("find the vendor"), tools=tools)
        n = headers["x-request-id"].removeprefix("req_scripted_")
        choice = doc["choices"][0]
        self.assertEqual(choice["finish_reason"], "tool_calls")
        self.assertEqual(choice["message"]["content"], "Looking it up.")
        calls = choice["message"]["tool_calls"]
        self.assertEqual([c["id"] for c in calls], [f"call_{n}_0", f"call_{n}_1"])
        self.assertEqual([c["type"] for c in calls], ["function", "function"])
        self.assertEqual([c["function"]["name"] for c in calls], ["lookup_vendor"] * 2)
        self.assertEqual([json.loads(c["function"]["arguments"]) for c in calls],
                         [{"vendor_id": "V-1"}, {"vendor_id": "V-2"}])
        done = math.ceil((len("Looking it up.") + sum(len(c["function"]["arguments"])
                                                      for c in calls)) / 4)
        self.assertEqual(doc["usage"]["completion_tokens"], done)
        # without the tool the rule does not match
        self.assertIsNone(self.chat(user("find the vendor"))[0]["choices"][0]["message"]
                          .get("tool_calls"))
        # the tool loop continues: results for both calls, then the next rule
        history = user("find the vendor") + [choice["message"]] + [
            {"role": "tool", "tool_call_id": c["id"], "content": '{"status":"APPROVED-42"}'}
            for c in calls]
        doc, _ = self.chat(history, tools=tools)
        self.assertEqual(doc["choices"][0]["message"]["content"],
                         "matched last_tool_result_contains")
        prompt = math.ceil((len("find the vendor") + len("Looking it up.")
                            + sum(len(c["function"]["arguments"]) for c in calls)
                            + 2 * len('{"status":"APPROVED-42"}')) / 4)
        self.assertEqual(doc["usage"]["prompt_tokens"], prompt)

    def test_last_role(self):
        messages = user("lastrole-marker") + [{"role": "assistant", "content": "partial"}]
        self.assertEqual(self.content(messages), "matched last_role")
        self.assertNotEqual(self.content(user("lastrole-marker")), "matched last_role")

    def tool_history(self, results):
        calls = [{"id": f"c{i}", "type": "function",
                  "function": {"name": "f", "arguments": "{}"}} for i in range(results)]
        history = user("count-marker")
        if results:
            history.append({"role": "assistant", "content": None, "tool_calls": calls})
            history += [{"role": "tool", "tool_call_id": c["id"], "content": "done"}
                        for c in calls]
        return history

    def test_tool_result_counts(self):
        self.assertEqual(self.content(self.tool_history(0)), "fewer than two tool results")
        self.assertEqual(self.content(self.tool_history(1)), "fewer than two tool results")
        self.assertEqual(self.content(self.tool_history(2)), "two or more tool results")
        self.assertEqual(self.content(self.tool_history(3)), "two or more tool results")

    def test_model(self):
        self.assertEqual(self.content(user("model-marker"), model="keel-scripted-large"),
                         "matched model")
        self.assertNotEqual(self.content(user("model-marker")), "matched model")

    def test_first_matching_rule_wins_and_reply_directive(self):
        self.assertEqual(self.content(user("order-marker")), "first rule")
        self.assertEqual(self.content(user("order-marker [[keel:reply=t-second-loses]]")),
                         "second rule")
        self.assertEqual(self.content(user("anything [[keel:reply=t-only-by-name]]")),
                         "chosen by reply=")
        once = f"order-marker [[keel:reply=t-second-loses times=1 id={time.monotonic_ns()}]]"
        self.assertEqual(self.content(user(once)), "second rule")
        self.assertEqual(self.content(user(once)), "first rule")
        status, _, body = self.call("POST", "/v1/chat/completions", {
            "model": "m", "messages": user("[[keel:reply=no-such-rule]]")})
        err = self.assert_error(status, body, 400, "invalid_request_error")
        self.assertIn("no-such-rule", err["message"])

    def test_default_scenarios_loaded(self):
        self.assertEqual(self.content(user("Reply with the single word pong.")), "pong")

    def test_no_match(self):
        self.assertEqual(self.content(user("qwertyuiop")),
                         "Scripted reply from keel's offline model server: no scenario matched.")

    def test_max_completion_tokens_cuts_content(self):
        doc, _ = self.chat(user("long-marker"), max_completion_tokens=5)
        self.assertEqual(doc["choices"][0]["finish_reason"], "length")
        self.assertEqual(doc["choices"][0]["message"]["content"], ("abcdefghij" * 10)[:20])

    def test_schema_fallback(self):
        schema = {
            "type": "object", "additionalProperties": False,
            "properties": {
                "po_number": {"type": "string", "minLength": 12},
                "status": {"type": "string", "enum": ["approved", "rejected"]},
                "quantity": {"type": "integer", "minimum": 3},
                "price": {"type": "number", "exclusiveMinimum": 0},
                "urgent": {"type": "boolean"},
                "note": {"type": ["null", "string"]},
                "lines": {"type": "array", "minItems": 2, "items": {"$ref": "#/$defs/line"}},
                "vendor": {"$ref": "#/definitions/vendor"},
                "optional": {"type": "string"},
            },
            "required": ["po_number", "status", "quantity", "price", "urgent", "note", "lines",
                         "vendor"],
            "$defs": {"line": {"type": "object", "properties": {
                "sku": {"type": "string"}, "qty": {"type": "integer", "minimum": 1}},
                "required": ["sku", "qty"]}},
            "definitions": {"vendor": {"type": "object", "properties": {
                "id": {"type": "string"}}, "required": ["id"]}},
        }
        fmt = {"type": "json_schema", "json_schema": {"name": "po_unmatched", "schema": schema}}
        value = json.loads(self.content(user("make a PO"), response_format=fmt))
        self.assertTrue(valid(value, schema, schema), value)
        self.assertEqual(set(value), set(schema["required"]))  # not strict: no "optional"
        self.assertEqual(value["status"], "approved")
        self.assertEqual(value["quantity"], 3)
        self.assertGreater(value["price"], 0)
        self.assertIs(value["urgent"], False)
        self.assertEqual(len(value["lines"]), 2)
        # strict: every property
        fmt["json_schema"]["strict"] = True
        value = json.loads(self.content(user("make a PO"), response_format=fmt))
        self.assertTrue(valid(value, schema, schema), value)
        self.assertEqual(set(value), set(schema["properties"]))

    def test_forced_tool_choice_fallback(self):
        tools = [{"type": "function", "function": {"name": "record_quote", "strict": True,
                                                   "parameters": {
                  "type": "object", "properties": {"amount": {"type": "number", "minimum": 10}},
                  "required": ["amount"], "additionalProperties": False}}}]
        doc, _ = self.chat(user("qwertyuiop"), tools=tools,
                           tool_choice={"type": "function", "function": {"name": "record_quote"}})
        call = doc["choices"][0]["message"]["tool_calls"][0]
        self.assertEqual(call["function"]["name"], "record_quote")
        self.assertEqual(json.loads(call["function"]["arguments"]), {"amount": 10})


class Validation(Base):
    def post(self, body, expect_param):
        status, headers, raw = self.call("POST", "/v1/chat/completions", body)
        self.assertIn("x-request-id", headers)
        err = self.assert_error(status, raw, 400, "invalid_request_error",
                                code=json.loads(raw)["error"]["code"])
        self.assertEqual(err["param"], expect_param)
        return err

    def test_bad_requests(self):
        self.post(b"{not json", None)
        self.post({"messages": user("x")}, "model")
        self.post({"model": "m"}, "messages")
        self.post({"model": "m", "messages": []}, "messages")
        self.post({"model": "m", "messages": "hello"}, "messages")
        self.post({"model": "m", "messages": [{"role": "wizard", "content": "x"}]},
                  "messages[0].role")
        self.post({"model": "m", "messages": user("x") + [
            {"role": "tool", "tool_call_id": "call_x", "content": "{}"}]}, "messages[1].role")
        self.post({"model": "m", "messages": user("x") + [
            {"role": "assistant", "content": None, "tool_calls": [
                {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]},
            {"role": "user", "content": "no results"}]}, "messages")
        self.post({"model": "m", "messages": user("a reply"),
                   "response_format": {"type": "json_object"}}, "messages")


class Faults(Base):
    def fault(self, directive, tools=None, text="x", **fields):
        body = {"model": "keel-scripted-small", "messages": user(f"{text} [[keel:{directive}]]"),
                **fields}
        if tools:
            body["tools"] = tools
        return self.call("POST", "/v1/chat/completions", body)

    def test_429(self):
        status, headers, body = self.fault("fault=429 id=a")
        self.assert_error(status, body, 429, "requests", "rate_limit_exceeded")
        self.assertEqual(json.loads(body)["error"]["message"], "Rate limit reached for requests")
        self.assertEqual(headers["retry-after"], "1")
        self.assertIsNone(headers["retry-after-ms"])
        status, headers, body = self.fault("fault=429 retry_after=2 retry_after_ms=1500")
        self.assertEqual(status, 429)
        self.assertEqual((headers["retry-after"], headers["retry-after-ms"]), ("2", "1500"))
        status, headers, _ = self.fault("fault=429 retry_after=0.5")
        self.assertEqual(headers["retry-after"], "0.5")
        self.assertTrue(headers["x-request-id"].startswith("req_scripted_"))

    def test_429_quota(self):
        status, headers, body = self.fault("fault=429-quota")
        err = self.assert_error(status, body, 429, "insufficient_quota", "insufficient_quota")
        self.assertIn("exceeded your current quota", err["message"])
        self.assertIsNone(headers["retry-after"])

    def test_server_errors(self):
        for code in (500, 502, 503):
            status, _, body = self.fault(f"fault={code}")
            err = self.assert_error(status, body, code, "server_error")
            self.assertEqual(err["message"],
                             "The server had an error while processing your request.")

    def test_client_errors(self):
        status, _, body = self.fault("fault=400")
        err = self.assert_error(status, body, 400, "invalid_request_error", "invalid_value")
        self.assertEqual(err["param"], "messages")
        status, _, body = self.fault("fault=400-context-length")
        self.assert_error(status, body, 400, "invalid_request_error", "context_length_exceeded")
        status, _, body = self.fault("fault=401")
        self.assert_error(status, body, 401, "invalid_request_error", "invalid_api_key")
        status, _, body = self.fault("fault=403")
        self.assertEqual(status, 403)
        status, _, body = self.fault("fault=404")
        err = self.assert_error(status, body, 404, "invalid_request_error", "model_not_found")
        self.assertIn("keel-scripted-small", err["message"])
        status, _, body = self.fault("fault=422")
        self.assert_error(status, body, 422, "invalid_request_error")

    def test_times_then_normal(self):
        directive = f"fault=503 times=2 id=times-{time.monotonic_ns()}"
        self.assertEqual(self.fault(directive, text="zebra-last")[0], 503)
        self.assertEqual(self.fault(directive, text="zebra-last")[0], 503)
        status, _, body = self.fault(directive, text="zebra-last")
        self.assertEqual(status, 200)
        self.assertEqual(json.loads(body)["choices"][0]["message"]["content"],
                         "matched last_user_contains")
        # a different directive text has its own count
        self.assertEqual(self.fault(directive + "-other", text="zebra-last")[0], 503)

    def test_slow(self):
        with self.assertRaises((TimeoutError, socket.timeout, urllib.error.URLError)):
            request(self.server.base, "POST", "/v1/chat/completions",
                    {"model": "m", "messages": user("zebra-last [[keel:fault=slow delay=1.5]]")},
                    timeout=0.3)
        started = time.monotonic()
        status, _, body = self.fault("fault=slow delay=0.3", text="zebra-last")
        self.assertGreaterEqual(time.monotonic() - started, 0.3)
        self.assertEqual(status, 200)
        self.assertEqual(json.loads(body)["choices"][0]["message"]["content"],
                         "matched last_user_contains")
        time.sleep(1.5)  # the abandoned request finishes writing to a closed socket
        self.assertEqual(self.call("GET", "/healthz")[0], 200)
        self.assertNotIn("Traceback", self.server.log_path.read_text())

    def test_malformed(self):
        status, headers, body = self.fault("fault=malformed")
        self.assertEqual(status, 200)
        self.assertEqual(headers["Content-Type"], "application/json")
        self.assertEqual(int(headers["Content-Length"]), len(body))
        with self.assertRaises(json.JSONDecodeError):
            json.loads(body)

    def test_truncated(self):
        body = json.dumps({"model": "m", "messages": user("x [[keel:fault=truncated]]")}).encode()
        with socket.create_connection(("127.0.0.1", self.server.port), timeout=5) as s:
            s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n"
                      b"Content-Type: application/json\r\n"
                      + f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
            data = b""
            while chunk := s.recv(65536):
                data += chunk
        head, _, got = data.partition(b"\r\n\r\n")
        self.assertTrue(head.startswith(b"HTTP/1.1 200"), head)
        length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n")
                      if line.lower().startswith(b"content-length:"))
        self.assertGreater(len(got), 0)
        self.assertLess(len(got), length)
        with self.assertRaises(json.JSONDecodeError):
            json.loads(got)

    def tools(self):
        return [{"type": "function", "function": {"name": "create_po", "parameters": {
            "type": "object",
            "properties": {"vendor": {"type": "string"}, "amount": {"type": "number"},
                           "qty": {"type": "integer"}, "rush": {"type": "boolean"},
                           "lines": {"type": "array"}, "meta": {"type": "object"},
                           "note": {"type": "string"}},
            "required": ["vendor", "amount", "qty", "rush", "lines", "meta"]}}},
                {"type": "function", "function": {"name": "other"}}]

    def call_of(self, body):
        doc = json.loads(body)
        choice = doc["choices"][0]
        self.assertEqual(choice["finish_reason"], "tool_calls")
        calls = choice["message"]["tool_calls"]
        self.assertEqual(len(calls), 1)
        self.assertIsInstance(calls[0]["function"]["arguments"], str)
        return calls[0]["function"]

    def test_unknown_tool(self):
        status, _, body = self.fault("fault=unknown-tool", self.tools())
        self.assertEqual(status, 200)
        fn = self.call_of(body)
        self.assertEqual((fn["name"], fn["arguments"]), ("no_such_tool", "{}"))

    def test_invalid_args(self):
        status, _, body = self.fault("fault=invalid-args", self.tools())
        self.assertEqual(status, 200)
        fn = self.call_of(body)
        self.assertEqual(fn["name"], "create_po")
        args = json.loads(fn["arguments"])
        self.assertIs(args.pop("__unexpected__"), True)
        self.assertEqual(set(args), {"vendor", "amount", "qty", "rush", "lines", "meta"})
        self.assertIsInstance(args.pop("vendor"), (int, float))
        for value in args.values():
            self.assertIsInstance(value, str)
        status, _, body = self.fault("fault=invalid-args")
        fn = self.call_of(body)
        self.assertEqual(fn["name"], "missing_tool")
        self.assertEqual(json.loads(fn["arguments"]), {"__unexpected__": True})

    def test_bad_json_args(self):
        status, _, body = self.fault("fault=bad-json-args", self.tools())
        fn = self.call_of(body)
        self.assertEqual((fn["name"], fn["arguments"]), ("create_po", '{"amount": '))
        with self.assertRaises(json.JSONDecodeError):
            json.loads(fn["arguments"])

    def test_refusal(self):
        status, _, body = self.fault("fault=refusal")
        choice = json.loads(body)["choices"][0]
        self.assertEqual(choice["finish_reason"], "stop")
        self.assertIsNone(choice["message"]["content"])
        self.assertEqual(choice["message"]["refusal"], "I can't help with that.")

    def test_length(self):
        status, _, body = self.fault("fault=length", text="long-marker")
        choice = json.loads(body)["choices"][0]
        self.assertEqual(choice["finish_reason"], "length")
        self.assertEqual(choice["message"]["content"], "abcdefghij" * 5)
        fmt = {"type": "json_schema", "json_schema": {"name": "quote_extract", "schema": {}}}
        status, _, body = self.fault("fault=length", response_format=fmt)
        text = json.loads(body)["choices"][0]["message"]["content"]
        full = '{"vendor":"Acme GmbH","total":1250.5,"lines":[1,2]}'
        self.assertEqual(text, full[:len(full) // 2])
        with self.assertRaises(json.JSONDecodeError):
            json.loads(text)

    def test_empty_choices(self):
        status, _, body = self.fault("fault=empty-choices")
        doc = json.loads(body)
        self.assertEqual(status, 200)
        self.assertEqual(doc["choices"], [])
        self.assertIn("usage", doc)

    def test_unknown_fault_and_directive_are_loud(self):
        status, _, body = self.fault("fault=4299")
        err = self.assert_error(status, body, 400, "invalid_request_error")
        self.assertIn("4299", err["message"])
        status, _, body = self.fault("fualt=429")
        err = self.assert_error(status, body, 400, "invalid_request_error")
        self.assertIn("fualt=429", err["message"])
        status, _, body = self.fault("fault=429 times=zero")
        self.assertEqual(status, 400)


class Stats(Base):
    def stats(self, tag=None):
        status, _, body = self.call("GET", "/_keel/stats" + (f"?tag={tag}" if tag else ""))
        self.assertEqual(status, 200)
        return json.loads(body)

    def test_tags_are_counted_before_faults(self):
        before = self.stats()["requests"]
        tag = f"t-{time.monotonic_ns()}"
        self.assertEqual(self.stats(tag), {"tag": tag, "requests": 0})
        messages = [{"role": "system", "content": f"[[keel:tag={tag}]]"},
                    {"role": "user", "content": f"x [[keel:tag={tag}-b]] [[keel:tag={tag}]]"}]
        self.assertEqual(self.call("POST", "/v1/chat/completions",
                                   {"model": "m", "messages": messages})[0], 200)
        faulted = messages[:1] + user("[[keel:fault=500]]")
        self.assertEqual(self.call("POST", "/v1/chat/completions",
                                   {"model": "m", "messages": faulted})[0], 500)
        unknown = messages[:1] + user("[[keel:fault=what]]")
        self.assertEqual(self.call("POST", "/v1/chat/completions",
                                   {"model": "m", "messages": unknown})[0], 400)
        self.assertEqual(self.stats(tag), {"tag": tag, "requests": 3})
        self.assertEqual(self.stats(f"{tag}-b")["requests"], 1)
        whole = self.stats()
        self.assertEqual(whole["requests"], before + 3)
        self.assertEqual(whole["tags"][tag], 3)


class Hooks(Base):
    def test_record_list_and_failures(self):
        name = f"ops-{time.monotonic_ns()}"
        status, headers, body = self.call("POST", f"/hooks/{name}", {"text": "PO-1 approved"})
        self.assertEqual((status, body), (200, b"ok"))
        self.assertTrue(headers["Content-Type"].startswith("text/plain"))
        post = {"text": "PO-2 *rejected*", "blocks": [{"type": "section"}]}
        self.assertEqual(self.call("POST", f"/hooks/{name}", post,
                                   {"Idempotency-Key": "ns/wf/run/7"})[0], 200)
        self.assertEqual(self.call("POST", f"/hooks/{name}", b"not json"),
                         (400, unittest.mock.ANY, b"invalid_payload"))
        self.assertEqual(self.call("POST", f"/hooks/{name}", {"blocks": []})[2],
                         b"invalid_payload")
        status, _, body = self.call("POST", f"/hooks/{name}?status=500", {"text": "lost"})
        self.assertEqual(status, 500)
        status, _, body = self.call("GET", f"/_keel/hooks/{name}")
        self.assertEqual(status, 200)
        self.assertEqual(json.loads(body), {"posts": [{"text": "PO-1 approved"}, post],
                                            "keys": [None, "ns/wf/run/7"]})
        self.assertEqual(json.loads(self.call("GET", "/_keel/hooks/never-used")[2]),
                         {"posts": [], "keys": []})


class ApiKey(Base):
    @classmethod
    def env(cls):
        return {"KEEL_MODEL_SERVER_KEY": KEY}

    def test_key_required(self):
        body = {"model": "m", "messages": user("zebra-last")}
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": KEY},
                        {"Authorization": f"Basic {KEY}"}):
            status, _, raw = self.call("POST", "/v1/chat/completions", body, headers)
            err = self.assert_error(status, raw, 401, "invalid_request_error", "invalid_api_key")
            self.assertEqual(err["message"], "Incorrect API key provided.")
            self.assertIsNone(err["param"])
            self.assertNotIn(KEY, raw.decode())
        status, _, raw = self.call("GET", "/v1/models", headers={"Authorization": "Bearer no"})
        self.assertEqual(status, 401)
        auth = {"Authorization": f"Bearer {KEY}"}
        self.assertEqual(self.call("POST", "/v1/chat/completions", body, auth)[0], 200)
        self.assertEqual(self.call("GET", "/v1/models", headers=auth)[0], 200)
        self.assertEqual(self.call("GET", "/healthz")[0], 200)
        self.assertEqual(self.call("POST", "/hooks/x", {"text": "t"})[0], 200)
        self.assertNotIn(KEY, self.server.log_path.read_text())
        self.assertIn("POST /v1/chat/completions 401", self.server.log_path.read_text())


class BadScenarios(unittest.TestCase):
    def start_with(self, name, text):
        with tempfile.TemporaryDirectory() as tmp:
            (Path(tmp) / "01-good.json").write_text(json.dumps(TEST_RULES))
            (Path(tmp) / name).write_text(text)
            proc = subprocess.run([sys.executable, str(SERVER), "--port", "0",
                                   "--scenarios", tmp], capture_output=True, text=True,
                                  timeout=10)
        self.assertNotEqual(proc.returncode, 0)
        self.assertIn(name, proc.stderr)
        return proc.stderr

    def test_bad_files_stop_the_server(self):
        self.assertIn("not JSON", self.start_with("20-broken.json", '{"rules": ['))
        self.assertIn("last_usr_contains", self.start_with("20-typo.json", json.dumps(
            {"rules": [{"name": "a", "when": {"last_usr_contains": "x"},
                        "reply": {"content": "y"}}]})))
        self.assertIn("reply", self.start_with("20-noreply.json", json.dumps(
            {"rules": [{"name": "a", "when": {}}]})))
        self.assertIn("t-any", self.start_with("20-dup.json", json.dumps(
            {"rules": [{"name": "t-any", "reply": {"content": "y"}}]})))


class RunScript(unittest.TestCase):
    def test_up_is_idempotent_env_and_down(self):
        port = free_port()
        env = {**os.environ, "KEEL_MODEL_SERVER_PORT": str(port)}
        env.pop("KEEL_MODEL_SERVER_KEY", None)
        with tempfile.TemporaryDirectory() as tmp:
            def run(*args, check=True):
                proc = subprocess.run(["bash", str(RUN), *args], env=env, capture_output=True,
                                      text=True, timeout=30)
                if check:
                    self.assertEqual(proc.returncode, 0, proc.stderr)
                return proc
            try:
                run("up", tmp)
                pid = (Path(tmp) / "model-server.pid").read_text().strip()
                run("up", tmp)
                self.assertEqual((Path(tmp) / "model-server.pid").read_text().strip(), pid)
                self.assertEqual(run("env").stdout.strip(),
                                 f"export OPENAI_BASE_URL=http://127.0.0.1:{port}/v1")
                self.assertEqual(request(f"http://127.0.0.1:{port}", "GET", "/healthz")[2],
                                 b"ok")
                # the port is now taken by "something else" for a second run directory
                proc = run("up", str(Path(tmp) / "other"), check=False)
                self.assertNotEqual(proc.returncode, 0)
                self.assertIn("taken", proc.stderr)
            finally:
                run("down", tmp)
            self.assertFalse((Path(tmp) / "model-server.pid").exists())
            run("down", tmp)
            with tempfile.TemporaryDirectory() as bad:
                (Path(bad) / "10-bad.json").write_text("[]")
                proc = run("up", tmp, "--scenarios", bad, check=False)
                self.assertNotEqual(proc.returncode, 0)
                self.assertIn("10-bad.json", proc.stderr)

if __name__ == "__main__":
    unittest.main()
