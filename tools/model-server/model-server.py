#!/usr/bin/env python3
"""keel's offline OpenAI-compatible model server: a SCRIPTED stand-in for a real model provider.

Nothing here is a language model. Every answer comes from a scenario rule (JSON files), from a
fault directive a test wrote into a message, or from a fixed fallback; every response says so
("model": "scripted:<requested model>", "system_fingerprint": "keel-offline-scripted").

It speaks enough of the OpenAI Chat Completions wire format for keel's `llm.chat` activity, its
integration tests and the offline demo, and it also plays a Slack-compatible incoming webhook for
the `notify` tool. See tools/model-server/README.md for the endpoints, the `[[keel:...]]`
directives, the faults and the scenario format.

Python 3.11, standard library only. Usage:

    model-server.py [--host 127.0.0.1] [--port 8399] [--scenarios DIR]... [--port-file FILE]

If KEEL_MODEL_SERVER_KEY is set at start, every /v1 request must carry
`Authorization: Bearer <key>`. The key is never echoed or logged.
"""

import argparse
import hmac
import json
import math
import os
import re
import signal
import socket
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

FINGERPRINT = "keel-offline-scripted"
MODELS = ("keel-scripted-small", "keel-scripted-large")
NO_MATCH_TEXT = "Scripted reply from keel's offline model server: no scenario matched."
REFUSAL_TEXT = "I can't help with that."
MAX_BODY = 32 * 1024 * 1024
ROLES = ("system", "developer", "user", "assistant", "tool", "function")
FINISH_REASONS = ("stop", "length", "tool_calls", "content_filter")
TOOL_NAME_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
DIRECTIVE_RE = re.compile(r"\[\[keel:([^\[\]]*)\]\]")
DIRECTIVE_KEYS = ("tag", "fault", "times", "retry_after", "retry_after_ms", "delay", "reply", "id")
FAULTS = (
    "429", "429-quota", "500", "502", "503", "400", "400-context-length", "401", "403", "404",
    "422", "slow", "malformed", "truncated", "unknown-tool", "invalid-args", "bad-json-args",
    "refusal", "length", "empty-choices",
)


class ApiError(Exception):
    """An error answered with an OpenAI-style error body."""

    def __init__(self, status, message, type_="invalid_request_error", param=None, code=None,
                 headers=None):
        super().__init__(message)
        self.status = status
        self.body = {"error": {"message": message, "type": type_, "param": param, "code": code}}
        self.headers = headers or {}


def compact(value):
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def log(line):
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime())
    sys.stderr.write(f"{stamp}Z model-server: {line}\n")
    sys.stderr.flush()


def printable(text, limit=160):
    """Make a client-supplied value safe for one log line."""
    text = "".join(c if c.isprintable() and c not in " \t" else "?" for c in str(text))
    return text if len(text) <= limit else text[:limit] + "..."


# ---------------------------------------------------------------------------------------------
# Scenario files


class ScenarioError(Exception):
    pass


WHEN_STRINGS = ("last_user_contains", "any_contains", "system_contains", "response_format",
                "tool_available", "last_role", "last_tool_result_contains", "model")
WHEN_COUNTS = ("tool_results_at_least", "tool_results_less_than")


def check_when(when, where):
    if not isinstance(when, dict):
        raise ScenarioError(f"{where}: must be an object")
    for key, value in when.items():
        if key in WHEN_STRINGS:
            if not isinstance(value, str):
                raise ScenarioError(f"{where}.{key}: must be a string")
            if key == "last_role" and value not in ROLES:
                raise ScenarioError(f"{where}.{key}: '{value}' is not one of {', '.join(ROLES)}")
        elif key in WHEN_COUNTS:
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ScenarioError(f"{where}.{key}: must be a non-negative integer")
        else:
            known = ", ".join(WHEN_STRINGS + WHEN_COUNTS)
            raise ScenarioError(f"{where}: unknown condition '{key}' (known: {known})")


def check_reply(reply, where):
    if not isinstance(reply, dict):
        raise ScenarioError(f"{where}: must be an object")
    unknown = set(reply) - {"content", "json", "tool_calls", "finish_reason"}
    if unknown:
        raise ScenarioError(f"{where}: unknown key '{sorted(unknown)[0]}' "
                            "(known: content, json, tool_calls, finish_reason)")
    kinds = [k for k in ("content", "json", "tool_calls") if k in reply]
    if not kinds:
        raise ScenarioError(f"{where}: needs one of content, json, tool_calls")
    if "json" in reply and len(kinds) > 1:
        raise ScenarioError(f"{where}: json cannot be combined with content or tool_calls")
    if "content" in reply and not isinstance(reply["content"], str):
        raise ScenarioError(f"{where}.content: must be a string")
    if "finish_reason" in reply and reply["finish_reason"] not in FINISH_REASONS:
        raise ScenarioError(f"{where}.finish_reason: must be one of {', '.join(FINISH_REASONS)}")
    if "tool_calls" in reply:
        calls = reply["tool_calls"]
        if not isinstance(calls, list) or not calls:
            raise ScenarioError(f"{where}.tool_calls: must be a non-empty array")
        for i, call in enumerate(calls):
            at = f"{where}.tool_calls[{i}]"
            if not isinstance(call, dict):
                raise ScenarioError(f"{at}: must be an object")
            unknown = set(call) - {"name", "arguments"}
            if unknown:
                raise ScenarioError(f"{at}: unknown key '{sorted(unknown)[0]}' "
                                    "(known: name, arguments)")
            if not isinstance(call.get("name"), str) or not TOOL_NAME_RE.match(call["name"]):
                raise ScenarioError(f"{at}.name: must be a tool name ([A-Za-z0-9_-]{{1,64}})")
            if "arguments" in call and not isinstance(call["arguments"], (dict, str)):
                raise ScenarioError(f"{at}.arguments: must be a JSON object or a JSON text string")


def load_scenarios(dirs):
    """Every *.json file of every directory, in name order; returns the list of rules."""
    rules, names = [], {}
    for directory in dirs:
        path = Path(directory)
        if not path.is_dir():
            raise ScenarioError(f"{directory}: not a directory")
        for file in sorted(path.glob("*.json")):
            try:
                doc = json.loads(file.read_text(encoding="utf-8"))
            except (OSError, UnicodeDecodeError) as e:
                raise ScenarioError(f"{file}: cannot read: {e}") from None
            except json.JSONDecodeError as e:
                raise ScenarioError(f"{file}: not JSON: {e}") from None
            if not isinstance(doc, dict):
                raise ScenarioError(f"{file}: the top level must be an object")
            unknown = set(doc) - {"description", "rules"}
            if unknown:
                raise ScenarioError(f"{file}: unknown key '{sorted(unknown)[0]}' "
                                    "(known: description, rules)")
            if "description" in doc and not isinstance(doc["description"], str):
                raise ScenarioError(f"{file}: description must be a string")
            if not isinstance(doc.get("rules"), list):
                raise ScenarioError(f"{file}: needs \"rules\": an array")
            for i, rule in enumerate(doc["rules"]):
                where = f"{file}: rules[{i}]"
                if not isinstance(rule, dict):
                    raise ScenarioError(f"{where}: must be an object")
                unknown = set(rule) - {"name", "description", "when", "reply"}
                if unknown:
                    raise ScenarioError(f"{where}: unknown key '{sorted(unknown)[0]}' "
                                        "(known: name, description, when, reply)")
                name = rule.get("name")
                if not isinstance(name, str) or not name:
                    raise ScenarioError(f"{where}.name: must be a non-empty string")
                if name in names:
                    raise ScenarioError(f"{where}.name: '{name}' is also the name of a rule "
                                        f"in {names[name]}")
                names[name] = file
                check_when(rule.get("when", {}), f"{where}.when")
                if "reply" not in rule:
                    raise ScenarioError(f"{where}: needs a reply")
                check_reply(rule["reply"], f"{where}.reply")
                rules.append({"name": name, "when": rule.get("when", {}),
                              "reply": rule["reply"], "file": file.name})
    return rules


# ---------------------------------------------------------------------------------------------
# Minimal instances of JSON Schemas (structured-output fallback, forced tool calls)


def resolve_ref(root, ref):
    if not isinstance(ref, str) or not ref.startswith("#"):
        return None
    node = root
    for part in ref[1:].split("/")[1:]:
        part = unquote(part).replace("~1", "/").replace("~0", "~")
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return None
    return node if isinstance(node, dict) else None


def deref(schema, root, depth=0):
    while isinstance(schema, dict) and "$ref" in schema and depth < 64:
        target = resolve_ref(root, schema["$ref"])
        if target is None:
            return {}
        siblings = {k: v for k, v in schema.items() if k != "$ref"}
        schema = {**target, **siblings}
        depth += 1
    return schema if isinstance(schema, dict) else {}


def schema_type(schema):
    t = schema.get("type")
    if isinstance(t, list):
        rest = [x for x in t if x != "null"]
        return rest[0] if rest else (t[0] if t else None)
    if isinstance(t, str):
        return t
    if "properties" in schema or "required" in schema:
        return "object"
    if "items" in schema or "prefixItems" in schema:
        return "array"
    return None


STRING_FORMATS = {
    "date": "1970-01-01", "date-time": "1970-01-01T00:00:00Z", "time": "00:00:00Z",
    "email": "scripted@example.com", "uri": "https://example.com/scripted",
    "uuid": "00000000-0000-4000-8000-000000000000", "hostname": "example.com",
    "ipv4": "127.0.0.1", "ipv6": "::1",
}


def number_instance(schema, integer):
    low, low_exclusive = schema.get("minimum"), False
    ex = schema.get("exclusiveMinimum")
    if isinstance(ex, bool):  # draft 4: a flag on minimum
        low_exclusive = ex and low is not None
    elif isinstance(ex, (int, float)) and (low is None or ex >= low):
        low, low_exclusive = ex, True
    high = schema.get("maximum")
    exh = schema.get("exclusiveMaximum")
    if isinstance(exh, (int, float)) and not isinstance(exh, bool) and (high is None or exh <= high):
        high = exh - (1 if integer else 0)
    if low is None:
        value = 0
        if high is not None and high < 0:
            value = math.floor(high) if integer else high
        return value
    if integer:
        value = math.floor(low) + 1 if low_exclusive else math.ceil(low)
        step = schema.get("multipleOf")
        if isinstance(step, int) and not isinstance(step, bool) and step > 0 and value % step:
            value += step - value % step
        return value
    if not low_exclusive:
        return low
    if isinstance(high, (int, float)) and high > low:
        return low + min(1, (high - low) / 2)
    return low + 1


def instance(schema, root, strict, depth=0):
    schema = deref(schema, root)
    if depth > 32:
        return None
    if "const" in schema:
        return schema["const"]
    if isinstance(schema.get("enum"), list) and schema["enum"]:
        return schema["enum"][0]
    if isinstance(schema.get("allOf"), list):
        merged = {k: v for k, v in schema.items() if k != "allOf"}
        for part in schema["allOf"]:
            part = deref(part, root)
            for key, value in part.items():
                if key == "properties":
                    merged["properties"] = {**merged.get("properties", {}), **value}
                elif key == "required":
                    merged["required"] = list(merged.get("required", [])) + list(value)
                else:
                    merged.setdefault(key, value)
        return instance(merged, root, strict, depth + 1)
    if "type" not in schema:
        for key in ("anyOf", "oneOf"):
            options = schema.get(key)
            if isinstance(options, list) and options:
                chosen = next((o for o in options if schema_type(deref(o, root)) not in
                               (None, "null")), options[0])
                return instance(chosen, root, strict, depth + 1)
    kind = schema_type(schema)
    if kind == "object":
        props = schema.get("properties") if isinstance(schema.get("properties"), dict) else {}
        keys = [k for k in schema.get("required", []) if isinstance(k, str)]
        if strict:
            keys += [k for k in props if k not in keys]
        return {k: instance(props.get(k, {}), root, strict, depth + 1) for k in keys}
    if kind == "array":
        count = schema.get("minItems", 0)
        count = count if isinstance(count, int) and count > 0 else 0
        prefix = schema.get("prefixItems") if isinstance(schema.get("prefixItems"), list) else []
        items = schema.get("items") if isinstance(schema.get("items"), dict) else {}
        out = []
        for i in range(count):
            value = instance(prefix[i] if i < len(prefix) else items, root, strict, depth + 1)
            if schema.get("uniqueItems") and value in out:
                if isinstance(value, str):
                    value = f"{value}-{i}"
                elif isinstance(value, (int, float)) and not isinstance(value, bool):
                    value = value + i
            out.append(value)
        return out
    if kind == "string":
        text = STRING_FORMATS.get(schema.get("format"), "scripted")
        low = schema.get("minLength")
        if isinstance(low, int) and len(text) < low:
            text = text + "-" * (low - len(text))
        high = schema.get("maxLength")
        if isinstance(high, int) and 0 <= high < len(text):
            text = text[:high]
        return text
    if kind in ("integer", "number"):
        return number_instance(schema, kind == "integer")
    if kind == "boolean":
        return False
    return None


def wrong_value(schema, root):
    """A value of the wrong JSON type for schema (for the invalid-args fault)."""
    schema = deref(schema, root)
    kind = schema_type(schema)
    if kind is None and isinstance(schema.get("enum"), list) and schema["enum"]:
        kind = "string" if isinstance(schema["enum"][0], str) else "number"
    if kind == "string":
        return 12345
    return "scripted-wrong-type"


# ---------------------------------------------------------------------------------------------
# Chat completion requests


def message_text(message):
    content = message.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = [p.get("text") for p in content
                 if isinstance(p, dict) and isinstance(p.get("text"), str)]
        return "\n".join(parts)
    return ""


def arguments_text(arguments):
    return arguments if isinstance(arguments, str) else compact(arguments)


class Directive:
    def __init__(self, text, pairs):
        self.text = text
        self.tags = [v for k, v in pairs if k == "tag"]
        self.args = {k: v for k, v in pairs if k != "tag"}


def parse_directives(texts):
    """All distinct [[keel:...]] blocks of the texts in order; raises ApiError on bad ones."""
    out, seen = [], set()
    for text in texts:
        for match in DIRECTIVE_RE.finditer(text):
            tokens = match.group(1).split()
            norm = " ".join(tokens)
            if norm in seen:
                continue
            seen.add(norm)
            pairs, keys = [], set()
            for token in tokens:
                key, eq, value = token.partition("=")
                if not eq or not value or key not in DIRECTIVE_KEYS:
                    raise ApiError(400, f"Unknown keel directive '{token}' in [[keel:{norm}]] "
                                        f"(known keys: {', '.join(DIRECTIVE_KEYS)})",
                                   param="messages")
                if key != "tag" and key in keys:
                    raise ApiError(400, f"Repeated keel directive key '{key}' in [[keel:{norm}]]",
                                   param="messages")
                keys.add(key)
                pairs.append((key, value))
            out.append(Directive(norm, pairs))
    return out


def lenient_tags(body):
    """Tags of a request that may be invalid (counting happens before validation)."""
    tags = []
    messages = body.get("messages") if isinstance(body, dict) else None
    if isinstance(messages, list):
        for m in messages:
            if isinstance(m, dict):
                for match in DIRECTIVE_RE.finditer(message_text(m)):
                    for token in match.group(1).split():
                        key, _, value = token.partition("=")
                        if key == "tag" and value and value not in tags:
                            tags.append(value)
    return tags


def number_arg(directive, key, integer=False, positive=False):
    raw = directive.args.get(key)
    if raw is None:
        return None
    try:
        value = int(raw) if integer else float(raw)
    except ValueError:
        value = None
    if value is None or not math.isfinite(value) or value < 0 or (positive and value <= 0):
        kind = "a positive integer" if integer else "a non-negative number"
        raise ApiError(400, f"keel directive [[keel:{directive.text}]]: {key} must be {kind}",
                       param="messages")
    return value


class ChatRequest:
    """A validated chat completion request and the facts scenario rules look at."""

    def __init__(self, body):
        if not isinstance(body, dict):
            raise ApiError(400, "The request body must be a JSON object.", param=None)
        model = body.get("model")
        if model is None:
            raise ApiError(400, "you must provide a model parameter", param="model")
        if not isinstance(model, str) or not model:
            raise ApiError(400, "Invalid type for 'model': expected a non-empty string.",
                           param="model", code="invalid_type")
        self.model = model
        messages = body.get("messages")
        if messages is None:
            raise ApiError(400, "Missing required parameter: 'messages'.", param="messages",
                           code="missing_required_parameter")
        if not isinstance(messages, list):
            raise ApiError(400, "Invalid type for 'messages': expected an array.",
                           param="messages", code="invalid_type")
        if not messages:
            raise ApiError(400, "Invalid 'messages': empty array. Expected an array with "
                                "minimum length 1, but got an empty array instead.",
                           param="messages", code="empty_array")
        self.messages = messages
        self._check_messages()
        self._check_options(body)
        self.texts = [message_text(m) for m in messages]
        self.clean = [DIRECTIVE_RE.sub("", t) for t in self.texts]
        self.prompt_chars = sum(len(t) for t in self.texts)
        for m in messages:
            for call in m.get("tool_calls") or []:
                self.prompt_chars += len(arguments_text(call["function"]["arguments"]))
        self.directives = parse_directives(self.texts)

    def _check_messages(self):
        pending = None
        for i, m in enumerate(self.messages):
            at = f"messages[{i}]"
            if not isinstance(m, dict):
                raise ApiError(400, f"Invalid type for '{at}': expected an object.", param=at,
                               code="invalid_type")
            role = m.get("role")
            if role not in ROLES:
                raise ApiError(400, f"Invalid value for '{at}.role': expected one of "
                                    f"{', '.join(ROLES)}.", param=f"{at}.role",
                               code="invalid_value")
            content = m.get("content")
            if not (isinstance(content, (str, list)) or (content is None and role == "assistant")):
                raise ApiError(400, f"Invalid type for '{at}.content': expected a string or an "
                                    "array of content parts.", param=f"{at}.content",
                               code="invalid_type")
            if isinstance(content, list) and not all(isinstance(p, dict) for p in content):
                raise ApiError(400, f"Invalid '{at}.content': every part must be an object.",
                               param=f"{at}.content", code="invalid_type")
            if role == "tool":
                call_id = m.get("tool_call_id")
                if not isinstance(call_id, str):
                    raise ApiError(400, f"Missing required parameter: '{at}.tool_call_id'.",
                                   param=f"{at}.tool_call_id", code="missing_required_parameter")
                if pending is None or call_id not in pending:
                    raise ApiError(400, "Invalid parameter: messages with role 'tool' must be a "
                                        "response to a preceding message with 'tool_calls'.",
                                   param=f"{at}.role")
                pending.discard(call_id)
                continue
            if pending:
                raise ApiError(400, "An assistant message with 'tool_calls' must be followed by "
                                    "tool messages responding to each 'tool_call_id'. The "
                                    "following tool_call_ids did not have response messages: "
                                    + ", ".join(sorted(pending)), param="messages")
            pending = None
            calls = m.get("tool_calls")
            if calls is None:
                continue
            if role != "assistant" or not isinstance(calls, list):
                raise ApiError(400, f"Invalid '{at}.tool_calls'.", param=f"{at}.tool_calls")
            pending = set()
            for j, call in enumerate(calls):
                cat = f"{at}.tool_calls[{j}]"
                fn = call.get("function") if isinstance(call, dict) else None
                if (not isinstance(call.get("id") if isinstance(call, dict) else None, str)
                        or not isinstance(fn, dict) or not isinstance(fn.get("name"), str)
                        or not isinstance(fn.get("arguments"), (str, dict))):
                    raise ApiError(400, f"Invalid '{cat}': expected {{id, type: 'function', "
                                        "function: {name, arguments}}.", param=cat)
                pending.add(call["id"])
        if pending:
            raise ApiError(400, "An assistant message with 'tool_calls' must be followed by tool "
                                "messages responding to each 'tool_call_id'. The following "
                                "tool_call_ids did not have response messages: "
                                + ", ".join(sorted(pending)), param="messages")

    def _check_options(self, body):
        if body.get("stream"):
            raise ApiError(400, "keel's scripted model server does not stream; send "
                                "\"stream\": false.", param="stream")
        n = body.get("n", 1)
        if n not in (1, None):
            raise ApiError(400, "keel's scripted model server answers one choice only (n=1).",
                           param="n")
        tools = body.get("tools")
        self.tools = []
        if tools is not None:
            if not isinstance(tools, list):
                raise ApiError(400, "Invalid type for 'tools': expected an array.", param="tools",
                               code="invalid_type")
            for i, tool in enumerate(tools):
                fn = tool.get("function") if isinstance(tool, dict) else None
                if (not isinstance(tool, dict) or tool.get("type") != "function"
                        or not isinstance(fn, dict) or not isinstance(fn.get("name"), str)
                        or not TOOL_NAME_RE.match(fn["name"])):
                    raise ApiError(400, f"Invalid 'tools[{i}]': expected {{type: 'function', "
                                        "function: {name: [A-Za-z0-9_-]{1,64}, ...}}.",
                                   param=f"tools[{i}].function.name")
                params = fn.get("parameters", {})
                if not isinstance(params, dict):
                    raise ApiError(400, f"Invalid 'tools[{i}].function.parameters': expected "
                                        "an object.", param=f"tools[{i}].function.parameters")
                self.tools.append(fn)
        self.tool_names = [fn["name"] for fn in self.tools]
        choice = body.get("tool_choice")
        self.forced_tool = None
        if isinstance(choice, dict):
            name = (choice.get("function") or {}).get("name")
            if name not in self.tool_names:
                raise ApiError(400, f"Invalid value for 'tool_choice': no function named "
                                    f"'{name}' was specified in the 'tools' parameter.",
                               param="tool_choice")
            self.forced_tool = name
        elif choice == "required":
            if not self.tools:
                raise ApiError(400, "Invalid value for 'tool_choice': 'tool_choice' is only "
                                    "allowed when 'tools' are specified.", param="tool_choice")
            self.forced_tool = self.tool_names[0]
        elif choice not in (None, "auto", "none"):
            raise ApiError(400, "Invalid value for 'tool_choice'.", param="tool_choice")
        self.tool_choice_none = choice == "none"
        fmt = body.get("response_format")
        self.format_type, self.format_name, self.schema, self.strict = None, None, None, False
        if fmt is not None:
            if not isinstance(fmt, dict) or fmt.get("type") not in ("text", "json_object",
                                                                     "json_schema"):
                raise ApiError(400, "Invalid value for 'response_format.type': expected one of "
                                    "text, json_object, json_schema.",
                               param="response_format.type")
            self.format_type = fmt["type"]
            if self.format_type == "json_schema":
                js = fmt.get("json_schema")
                if not isinstance(js, dict) or not isinstance(js.get("name"), str):
                    raise ApiError(400, "Missing required parameter: "
                                        "'response_format.json_schema.name'.",
                                   param="response_format.json_schema.name")
                self.format_name = js["name"]
                self.schema = js.get("schema") if isinstance(js.get("schema"), dict) else {}
                self.strict = js.get("strict") is True
            elif self.format_type == "json_object":
                if not any("json" in message_text(m).lower() for m in self.messages):
                    raise ApiError(400, "'messages' must contain the word 'json' in some form, "
                                        "to use 'response_format' of type 'json_object'.",
                                   param="messages")
        limit = body.get("max_completion_tokens", body.get("max_tokens"))
        self.max_tokens = (limit if isinstance(limit, int) and not isinstance(limit, bool)
                           and limit > 0 else None)

    # -- facts for the rules

    def last_of_role(self, *roles):
        for m, text in zip(reversed(self.messages), reversed(self.clean)):
            if m["role"] in roles:
                return text
        return None

    def matches(self, when):
        last = self.messages[-1]
        for key, want in when.items():
            if key == "last_user_contains":
                text = self.last_of_role("user")
                ok = text is not None and want.lower() in text.lower()
            elif key == "any_contains":
                ok = any(want.lower() in t.lower() for t in self.clean)
            elif key == "system_contains":
                ok = any(m["role"] in ("system", "developer") and want.lower() in t.lower()
                         for m, t in zip(self.messages, self.clean))
            elif key == "response_format":
                ok = self.format_name == want
            elif key == "tool_available":
                ok = want in self.tool_names
            elif key == "last_role":
                ok = last["role"] == want
            elif key == "last_tool_result_contains":
                ok = last["role"] == "tool" and want.lower() in self.clean[-1].lower()
            elif key == "tool_results_at_least":
                ok = self.tool_results() >= want
            elif key == "tool_results_less_than":
                ok = self.tool_results() < want
            elif key == "model":
                ok = self.model == want
            else:
                ok = False
            if not ok:
                return False
        return True

    def tool_results(self):
        return sum(1 for m in self.messages if m["role"] == "tool")

    def first_tool(self):
        return self.tools[0] if self.tools else None


# ---------------------------------------------------------------------------------------------
# Replies


class Reply:
    def __init__(self, content=None, calls=None, finish=None, refusal=None, rule=None):
        self.content = content
        self.calls = calls or []  # [(name, arguments text)]
        self.finish = finish or ("tool_calls" if self.calls else "stop")
        self.refusal = refusal
        self.rule = rule

    def completion_chars(self):
        return (len(self.content or "") + len(self.refusal or "")
                + sum(len(args) for _, args in self.calls))


def reply_from_rule(rule):
    r = rule["reply"]
    content = r.get("content")
    if "json" in r:
        content = compact(r["json"])
    calls = [(c["name"], arguments_text(c.get("arguments", {}))) for c in r.get("tool_calls", [])]
    return Reply(content, calls, r.get("finish_reason"), rule=rule["name"])


def fallback_reply(req):
    if req.forced_tool:
        fn = next(f for f in req.tools if f["name"] == req.forced_tool)
        params = fn.get("parameters") or {"type": "object"}
        args = instance(params, params, fn.get("strict") is True)
        return Reply(None, [(fn["name"], compact(args if isinstance(args, dict) else {}))],
                     rule="forced-tool-choice")
    if req.format_type == "json_schema":
        value = instance(req.schema, req.schema, req.strict)
        return Reply(compact(value), rule="schema-fallback")
    if req.format_type == "json_object":
        return Reply(compact({"message": NO_MATCH_TEXT}), rule="json-object-fallback")
    return Reply(NO_MATCH_TEXT, rule="no-match")


def fault_reply(fault, req, normal):
    """Faults that answer 200 with an odd message; None for the others."""
    first = req.first_tool()
    if fault == "unknown-tool":
        return Reply(None, [("no_such_tool", "{}")], rule=None)
    if fault == "invalid-args":
        args = {"__unexpected__": True}
        name = "missing_tool"
        if first:
            name = first["name"]
            params = first.get("parameters") or {}
            props = params.get("properties") if isinstance(params.get("properties"), dict) else {}
            for key in params.get("required", []):
                if isinstance(key, str):
                    args[key] = wrong_value(props.get(key, {}), params)
        return Reply(None, [(name, compact(args))])
    if fault == "bad-json-args":
        return Reply(None, [(first["name"] if first else "missing_tool", '{"amount": ')])
    if fault == "refusal":
        return Reply(None, refusal=REFUSAL_TEXT, finish="stop")
    if fault == "length":
        if normal.content:
            return Reply(normal.content[:len(normal.content) // 2], finish="length",
                         rule=normal.rule)
        if normal.calls:
            calls = list(normal.calls)
            name, args = calls[-1]
            calls[-1] = (name, args[:len(args) // 2])
            return Reply(None, calls, finish="length", rule=normal.rule)
        return Reply("", finish="length", rule=normal.rule)
    return None


def error_for_fault(fault, req):
    if fault == "429":
        return ApiError(429, "Rate limit reached for requests", type_="requests",
                        code="rate_limit_exceeded")
    if fault == "429-quota":
        return ApiError(429, "You exceeded your current quota, please check your plan and "
                             "billing details.", type_="insufficient_quota",
                        code="insufficient_quota")
    if fault in ("500", "502", "503"):
        return ApiError(int(fault), "The server had an error while processing your request.",
                        type_="server_error")
    if fault == "400":
        return ApiError(400, "Invalid value for 'messages[0].content': rejected by keel's "
                             "scripted model server (fault=400).", param="messages",
                        code="invalid_value")
    if fault == "400-context-length":
        return ApiError(400, "This model's maximum context length is 8192 tokens. However, your "
                             "messages resulted in 9001 tokens. Please reduce the length of the "
                             "messages.", param="messages", code="context_length_exceeded")
    if fault == "401":
        return ApiError(401, "Incorrect API key provided.", code="invalid_api_key")
    if fault == "403":
        return ApiError(403, "Country, region, or territory not supported", type_="request_forbidden",
                        code="unsupported_country_region_territory")
    if fault == "404":
        return ApiError(404, f"The model `{req.model}` does not exist or you do not have access "
                             "to it.", code="model_not_found")
    if fault == "422":
        return ApiError(422, "Unprocessable request: keel's scripted model server could not "
                             "process the request content (fault=422).", param="messages")
    return None


# ---------------------------------------------------------------------------------------------
# Shared state


class State:
    def __init__(self, rules, key):
        self.rules = rules
        self.by_name = {r["name"]: r for r in rules}
        self.key = key
        self.lock = threading.Lock()
        self.serial = 0
        self.chat_requests = 0
        self.tags = {}
        self.used = {}  # directive text -> times applied
        self.hooks = {}
        self.hook_keys = {}  # name -> the Idempotency-Key of each recorded post (or None)

    def next_serial(self):
        with self.lock:
            self.serial += 1
            return self.serial

    def count(self, tags):
        with self.lock:
            self.chat_requests += 1
            for tag in tags:
                self.tags[tag] = self.tags.get(tag, 0) + 1

    def take(self, directives):
        """The first directive still in force (times not used up); uses one of its times."""
        with self.lock:
            for d in directives:
                times = d.args.get("times")
                if times is None:
                    return d
                if self.used.get(d.text, 0) < int(times):
                    self.used[d.text] = self.used.get(d.text, 0) + 1
                    return d
        return None


# ---------------------------------------------------------------------------------------------
# HTTP


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "keel-model-server/1 (scripted)"
    timeout = 300

    state: State  # set on the class by main()

    # -- plumbing

    def version_string(self):
        return self.server_version

    def log_message(self, format, *args):  # noqa: A002 (the base class's signature)
        pass  # one line per request is written by finish_log(); never headers

    def setup(self):
        super().setup()
        self.info = {}

    def start(self):
        self.serial = self.state.next_serial()
        self.request_id = f"req_scripted_{self.serial}"
        self.started = time.monotonic()
        self.info = {"model": "-", "tags": "-", "fault": "-", "rule": "-"}

    def finish_log(self, status, note=""):
        ms = int((time.monotonic() - self.started) * 1000)
        i = self.info
        log(f"{self.request_id} {printable(self.command)} {printable(self.path, 200)} {status} "
            f"model={printable(i['model'])} tags={printable(i['tags'])} "
            f"fault={printable(i['fault'])} rule={printable(i['rule'])} {ms}ms{note}")

    def read_body(self):
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            chunks, total = [], 0
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                total += size
                if total > MAX_BODY:
                    raise ApiError(413, "Request body too large.")
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY:
            self.close_connection = True
            raise ApiError(413, "Request body too large.")
        return self.rfile.read(length) if length > 0 else b""

    def send(self, status, body, content_type="application/json", headers=None, sent_bytes=None,
             note=""):
        if isinstance(body, (dict, list)):
            body = compact(body).encode("utf-8")
        elif isinstance(body, str):
            body = body.encode("utf-8")
        try:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("x-request-id", self.request_id)
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            if sent_bytes is not None:
                self.close_connection = True  # the rest never comes: end the connection
            self.end_headers()
            self.wfile.write(body if sent_bytes is None else body[:sent_bytes])
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError, socket.timeout):
            self.close_connection = True
            note += " (client went away)"
        self.finish_log(status, note)

    def send_error_body(self, err):
        self.send(err.status, err.body, headers=err.headers)

    def dispatch(self, method):
        self.start()
        try:
            url = urlsplit(self.path)
            self.route(method, url.path, parse_qs(url.query))
        except ApiError as err:
            self.send_error_body(err)
        except (BrokenPipeError, ConnectionResetError, socket.timeout):
            self.close_connection = True
            self.finish_log("-", " (client went away)")
        except Exception as e:  # a bug here must not take the server down
            import traceback
            traceback.print_exc(file=sys.stderr)
            self.close_connection = True
            self.send_error_body(ApiError(500, f"keel model server internal error: "
                                               f"{type(e).__name__}", type_="server_error"))

    def do_GET(self):
        self.dispatch("GET")

    def do_POST(self):
        self.dispatch("POST")

    def do_PUT(self):
        self.dispatch("PUT")

    def do_DELETE(self):
        self.dispatch("DELETE")

    def do_PATCH(self):
        self.dispatch("PATCH")

    # -- routes

    def route(self, method, path, query):
        body = self.read_body()  # always, so a keep-alive connection stays in step
        if path == "/v1/chat/completions" and method == "POST":
            return self.chat(body)  # counted in the stats first, then authorized
        if path.startswith("/v1/"):
            self.authorize()
            if path == "/v1/models" and method == "GET":
                return self.send(200, {"object": "list", "data": [model_object(m) for m in MODELS]})
            if path.startswith("/v1/models/") and method == "GET":
                name = unquote(path[len("/v1/models/"):])
                if name in MODELS:
                    return self.send(200, model_object(name))
                raise ApiError(404, f"The model `{name}` does not exist or you do not have access "
                                    "to it.", code="model_not_found")
            raise ApiError(404, f"Invalid URL ({method} {path})")
        if path == "/healthz" and method == "GET":
            return self.send(200, "ok", "text/plain; charset=utf-8")
        if path.startswith("/hooks/") and len(path) > len("/hooks/") and method == "POST":
            return self.hook(unquote(path[len("/hooks/"):]), body, query)
        if path.startswith("/_keel/hooks/") and method == "GET":
            name = unquote(path[len("/_keel/hooks/"):])
            with self.state.lock:
                posts = list(self.state.hooks.get(name, []))
                keys = list(self.state.hook_keys.get(name, []))
            return self.send(200, {"posts": posts, "keys": keys})
        if path == "/_keel/stats" and method == "GET":
            with self.state.lock:
                if "tag" in query:
                    tag = query["tag"][0]
                    return self.send(200, {"tag": tag, "requests": self.state.tags.get(tag, 0)})
                return self.send(200, {"requests": self.state.chat_requests,
                                       "tags": dict(self.state.tags)})
        raise ApiError(404, f"Invalid URL ({method} {path})")

    def authorize(self):
        key = self.state.key
        if key is None:
            return
        header = self.headers.get("Authorization", "")
        scheme, _, given = header.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(),
                                                                 key.encode()):
            raise ApiError(401, "Incorrect API key provided.", code="invalid_api_key")

    def hook(self, name, body, query):
        status = query.get("status", [None])[0]
        if status is not None:
            if not status.isdigit() or not 400 <= int(status) <= 599:
                return self.send(400, "invalid_status_param", "text/plain; charset=utf-8")
            code = int(status)
            text = {400: "invalid_payload", 403: "action_prohibited", 404: "no_service",
                    410: "channel_is_archived", 429: "rate_limited"}.get(code, "internal_error")
            headers = {"retry-after": "1"} if code == 429 else None
            return self.send(code, text, "text/plain; charset=utf-8", headers, note=" not recorded")
        try:
            doc = json.loads(body.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError):
            doc = None
        if not isinstance(doc, dict) or not isinstance(doc.get("text"), str):
            return self.send(400, "invalid_payload", "text/plain; charset=utf-8")
        with self.state.lock:
            self.state.hooks.setdefault(name, []).append(doc)
            self.state.hook_keys.setdefault(name, []).append(self.headers.get("Idempotency-Key"))
        return self.send(200, "ok", "text/plain; charset=utf-8")

    def chat(self, raw):
        try:
            body = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError):
            body = None
        tags = lenient_tags(body)
        self.state.count(tags)
        if tags:
            self.info["tags"] = ",".join(tags)
        if isinstance(body, dict) and isinstance(body.get("model"), str):
            self.info["model"] = body["model"]
        self.authorize()
        if body is None:
            raise ApiError(400, "We could not parse the JSON body of your request. (HINT: This "
                                "likely means you aren't using your HTTP library correctly. The "
                                "OpenAI API expects a JSON payload, but what was sent was not "
                                "valid JSON.)", param=None)
        req = ChatRequest(body)

        faults = [d for d in req.directives if "fault" in d.args]
        for d in req.directives:
            fault = d.args.get("fault")
            if fault is not None and fault not in FAULTS:
                raise ApiError(400, f"Unknown keel fault '{fault}' in directive "
                                    f"[[keel:{d.text}]] (known faults: {', '.join(FAULTS)})",
                               param="messages")
            if fault is None:
                extra = [k for k in ("retry_after", "retry_after_ms", "delay") if k in d.args]
                if "times" in d.args and "reply" not in d.args:
                    extra.insert(0, "times")
                if extra:
                    raise ApiError(400, f"keel directive [[keel:{d.text}]]: '{extra[0]}' needs "
                                        "fault= in the same directive", param="messages")
            if "reply" in d.args and d.args["reply"] not in self.state.by_name:
                raise ApiError(400, f"keel directive [[keel:{d.text}]]: no scenario rule is named "
                                    f"'{d.args['reply']}'", param="messages")
            if "reply" in d.args and "fault" in d.args:
                raise ApiError(400, f"keel directive [[keel:{d.text}]]: put fault= and reply= in "
                                    "separate directives", param="messages")
            number_arg(d, "times", integer=True, positive=True)
            for key in ("retry_after", "retry_after_ms", "delay"):
                number_arg(d, key)

        chosen = self.state.take(faults)
        fault = chosen.args["fault"] if chosen else None
        if fault:
            self.info["fault"] = fault
            delay = number_arg(chosen, "delay")
            if fault == "slow" and delay is None:
                delay = 30.0
            if delay:
                time.sleep(delay)
            err = error_for_fault(fault, req)
            if err is not None:
                err.headers.update(retry_headers(chosen, fault))
                raise err

        # what the model would say without a fault
        replies = [d for d in reversed(req.directives) if "reply" in d.args]
        picked = self.state.take(replies) if fault not in ("unknown-tool", "invalid-args",
                                                           "bad-json-args", "refusal",
                                                           "empty-choices", "malformed") else None
        if picked:
            normal = reply_from_rule(self.state.by_name[picked.args["reply"]])
        else:
            rule = next((r for r in self.state.rules if req.matches(r["when"])), None)
            normal = reply_from_rule(rule) if rule else fallback_reply(req)
        if req.max_tokens and normal.content and math.ceil(len(normal.content) / 4) > \
                req.max_tokens:
            normal = Reply(normal.content[:req.max_tokens * 4], normal.calls, "length",
                           rule=normal.rule)
        reply = fault_reply(fault, req, normal) or normal
        self.info["rule"] = reply.rule or "-"
        response = completion(self.serial, req, reply, empty=fault == "empty-choices")
        headers = {"openai-processing-ms": str(int((time.monotonic() - self.started) * 1000))}
        if fault == "malformed":
            text = (f'{{"id": "chatcmpl-scripted-{self.serial}", "object": "chat.completion", '
                    '"choices": [ {"mess')
            return self.send(200, text, headers=headers)
        data = compact(response).encode("utf-8")
        if fault == "truncated":
            return self.send(200, data, headers=headers, sent_bytes=len(data) // 2,
                             note=f" (sent {len(data) // 2} of {len(data)} bytes)")
        return self.send(200, data, headers=headers)


def seconds_text(value):
    return str(int(value)) if value == int(value) else repr(value)


def retry_headers(directive, fault):
    headers = {}
    after = number_arg(directive, "retry_after")
    if after is not None:
        headers["retry-after"] = seconds_text(after)
    elif fault == "429":
        headers["retry-after"] = "1"
    after_ms = number_arg(directive, "retry_after_ms")
    if after_ms is not None:
        headers["retry-after-ms"] = seconds_text(after_ms)
    if fault == "429":
        headers["x-ratelimit-limit-requests"] = "60"
        headers["x-ratelimit-remaining-requests"] = "0"
        headers["x-ratelimit-reset-requests"] = headers["retry-after"] + "s"
    return headers


def model_object(name):
    return {"id": name, "object": "model", "created": 0, "owned_by": FINGERPRINT}


def completion(serial, req, reply, empty=False):
    message = {"role": "assistant", "content": reply.content, "refusal": reply.refusal}
    if reply.calls:
        message["tool_calls"] = [
            {"id": f"call_{serial}_{i}", "type": "function",
             "function": {"name": name, "arguments": args}}
            for i, (name, args) in enumerate(reply.calls)]
    prompt = max(1, math.ceil(req.prompt_chars / 4))
    done = max(1, math.ceil(reply.completion_chars() / 4))
    choices = [] if empty else [{"index": 0, "message": message, "logprobs": None,
                                 "finish_reason": reply.finish}]
    return {
        "id": f"chatcmpl-scripted-{serial}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": f"scripted:{req.model}",
        "system_fingerprint": FINGERPRINT,
        "choices": choices,
        "usage": {"prompt_tokens": prompt, "completion_tokens": done,
                  "total_tokens": prompt + done,
                  "prompt_tokens_details": {"cached_tokens": 0}},
    }


class Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False  # never wait for slow or idle keep-alive connections at exit
    allow_reuse_address = True

    def handle_error(self, request, client_address):
        err = sys.exc_info()[1]
        if isinstance(err, (BrokenPipeError, ConnectionResetError, socket.timeout)):
            log(f"connection from {client_address[0]} ended early: {type(err).__name__}")
            return
        super().handle_error(request, client_address)


def main(argv=None):
    here = Path(__file__).resolve().parent
    parser = argparse.ArgumentParser(
        description="keel's offline OpenAI-compatible model server (scripted, not a model).")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8399, help="0 picks a free port")
    parser.add_argument("--scenarios", action="append", metavar="DIR",
                        help=f"scenario directory (repeatable; default {here / 'scenarios'})")
    parser.add_argument("--port-file", metavar="FILE",
                        help="write the port listened on to FILE once listening")
    args = parser.parse_args(argv)

    dirs = args.scenarios or [str(here / "scenarios")]
    try:
        rules = load_scenarios(dirs)
    except ScenarioError as e:
        print(f"model-server: bad scenario: {e}", file=sys.stderr)
        return 2
    key = os.environ.get("KEEL_MODEL_SERVER_KEY") or None

    Handler.state = State(rules, key)
    Server.address_family = socket.AF_INET6 if ":" in args.host else socket.AF_INET
    try:
        server = Server((args.host, args.port), Handler)
    except OSError as e:
        print(f"model-server: cannot listen on {args.host}:{args.port}: {e.strerror}",
              file=sys.stderr)
        return 1
    port = server.server_address[1]
    if args.port_file:
        tmp = args.port_file + ".tmp"
        Path(tmp).write_text(f"{port}\n")
        os.replace(tmp, args.port_file)

    def stop(signum, frame):
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    if signal.getsignal(signal.SIGINT) is not signal.SIG_IGN:  # started in the background
        signal.signal(signal.SIGINT, stop)
    log(f"scripted OpenAI-compatible stand-in listening on http://{args.host}:{port}/v1 "
        f"({len(rules)} scenario rules from {', '.join(dirs)}; "
        f"API key {'required' if key else 'not required'})")
    server.serve_forever(poll_interval=0.2)
    server.server_close()
    log("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
