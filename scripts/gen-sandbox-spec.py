#!/usr/bin/env python3
"""Generates crates/sandbox/src/spec.rs from Asana's OpenAPI spec.

What it writes, all from the spec and nothing by hand:

- per operation the sandbox serves (OPS below): the declared query
  parameters, the opt_fields enum (what strict mode accepts), the writable
  (non-readOnly) fields of the request body's `data`, and the schema of the
  record it answers with;
- SCHEMAS: every schema reachable from those records, as a table of fields
  (a value, an object or an array, and which schema a nested object has).
  A compact/base schema of a resource (`UserCompact`, `TaskBase`) stands for
  the whole resource: its fields are those of XCompact, XBase and XResponse
  together, because Asana resolves a dotted path into the nested resource's
  full record (`followers.email`, docs: input/output options). An inline
  object whose `resource_type` example names a resource is widened the same
  way. `gid` and `resource_type` are not listed: the sandbox accepts them at
  every level;
- SPEC_PATHS: every (method, path) of the spec, so that an operation the
  sandbox does not implement answers 501 and only a path the spec does not
  know answers 404.

Usage (from the repository root; needs PyYAML, and rustfmt to format):

    python3 scripts/gen-sandbox-spec.py ../shared/asana/asana_oas.yaml > crates/sandbox/src/spec.rs
"""
import subprocess
import sys

import yaml

OPS = [
    ("GET", "/users", "GET_USERS"),
    ("GET", "/users/{user_gid}", "GET_USER"),
    ("GET", "/workspaces", "GET_WORKSPACES"),
    ("GET", "/workspaces/{workspace_gid}", "GET_WORKSPACE"),
    ("GET", "/workspaces/{workspace_gid}/projects", "GET_WORKSPACE_PROJECTS"),
    ("GET", "/workspaces/{workspace_gid}/custom_fields", "GET_WORKSPACE_CUSTOM_FIELDS"),
    ("GET", "/projects", "GET_PROJECTS"),
    ("POST", "/projects", "CREATE_PROJECT"),
    ("POST", "/workspaces/{workspace_gid}/projects", "CREATE_PROJECT_FOR_WORKSPACE"),
    ("GET", "/projects/{project_gid}", "GET_PROJECT"),
    ("GET", "/projects/{project_gid}/tasks", "GET_PROJECT_TASKS"),
    ("GET", "/projects/{project_gid}/sections", "GET_SECTIONS"),
    ("POST", "/projects/{project_gid}/sections", "CREATE_SECTION"),
    ("GET", "/sections/{section_gid}", "GET_SECTION"),
    ("POST", "/sections/{section_gid}/addTask", "ADD_TASK_FOR_SECTION"),
    ("GET", "/projects/{project_gid}/custom_field_settings", "GET_CUSTOM_FIELD_SETTINGS"),
    ("POST", "/projects/{project_gid}/addCustomFieldSetting", "ADD_CUSTOM_FIELD_SETTING"),
    ("POST", "/custom_fields", "CREATE_CUSTOM_FIELD"),
    ("GET", "/tasks", "GET_TASKS"),
    ("GET", "/tasks/{task_gid}", "GET_TASK"),
    ("POST", "/tasks", "CREATE_TASK"),
    ("PUT", "/tasks/{task_gid}", "UPDATE_TASK"),
    ("DELETE", "/tasks/{task_gid}", "DELETE_TASK"),
    ("GET", "/tasks/{task_gid}/subtasks", "GET_SUBTASKS"),
    ("POST", "/tasks/{task_gid}/subtasks", "CREATE_SUBTASK"),
    ("GET", "/tasks/{task_gid}/stories", "GET_STORIES"),
    ("POST", "/tasks/{task_gid}/stories", "CREATE_STORY"),
    ("GET", "/stories/{story_gid}", "GET_STORY"),
    ("PUT", "/stories/{story_gid}", "UPDATE_STORY"),
    ("DELETE", "/stories/{story_gid}", "DELETE_STORY"),
    ("POST", "/tasks/{task_gid}/addProject", "ADD_PROJECT"),
    ("POST", "/tasks/{task_gid}/removeProject", "REMOVE_PROJECT"),
    ("GET", "/events", "GET_EVENTS"),
]

METHODS = ("get", "put", "post", "delete", "patch", "head", "options")
SUFFIXES = ("Compact", "Base", "Response")


def main():
    spec = yaml.safe_load(open(sys.argv[1]))
    schemas = spec["components"]["schemas"]

    def deref(node):
        while isinstance(node, dict) and "$ref" in node:
            parts = node["$ref"].lstrip("#/").split("/")
            node = spec
            for p in parts:
                node = node[p]
        return node

    def ref_name(node):
        if isinstance(node, dict) and "$ref" in node:
            return node["$ref"].rsplit("/", 1)[-1]
        return None

    def read_only(node):
        """readOnly on the node itself or on any member of its allOf."""
        node = deref(node)
        if node.get("readOnly"):
            return True
        return any(read_only(sub) for sub in node.get("allOf", []))

    def props(schema):
        """name -> property node, following $ref and allOf."""
        schema = deref(schema)
        out = {}
        for sub in schema.get("allOf", []):
            out.update(props(sub))
        for name, p in (schema.get("properties") or {}).items():
            out[name] = p
        return out

    # Resource families: Task -> [TaskCompact, TaskBase, TaskResponse].
    families = {}
    for name in schemas:
        for suf in SUFFIXES:
            if name.endswith(suf) and len(name) > len(suf):
                families.setdefault(name[: -len(suf)], []).append(name)

    def family_of(name):
        for suf in SUFFIXES:
            if name.endswith(suf) and name[: -len(suf)] in families:
                return name[: -len(suf)]
        return None

    def camel(snake):
        return "".join(w.capitalize() for w in snake.split("_"))

    # The schema table, built on demand: key -> index.
    table = []  # [name, {field: kind}]
    index = {}

    def target_of(node):
        """What a property holds: ("value",) / ("values",) / ("object", key) / ("array", key)."""
        name = ref_name(node)
        node = deref(node)
        if name is None:
            for sub in node.get("allOf", []):
                if ref_name(sub):
                    name = ref_name(sub)
                    node = deref(sub)
                    break
        if node.get("type") == "array" or "items" in node:
            inner = target_of(node.get("items", {}))
            if inner[0] == "object":
                return ("array", inner[1])
            return ("values",)
        if name is not None and props(node):
            fam = family_of(name)
            return ("object", ("family", fam) if fam else ("named", name))
        if props(node):
            return ("object", ("inline", id(node), node))
        return ("value",)

    def key_name(key):
        if key[0] == "family":
            return key[1]
        if key[0] == "named":
            return key[1]
        return None

    def fields_of(key):
        if key[0] == "family":
            out = {}
            for suf in SUFFIXES:
                n = key[1] + suf
                if n in schemas:
                    out.update(props(schemas[n]))
            return out
        if key[0] == "named":
            return props(schemas[key[1]])
        node = key[2]
        out = dict(props(node))
        rt = deref(out.get("resource_type", {})).get("example")
        if isinstance(rt, str) and camel(rt) in families:
            for suf in SUFFIXES:
                n = camel(rt) + suf
                if n in schemas:
                    for k, v in props(schemas[n]).items():
                        out.setdefault(k, v)
        return out

    def intern(key, label):
        ident = key[:2]
        if ident in index:
            return index[ident]
        i = len(table)
        index[ident] = i
        entry = [key_name(key) or label, {}]
        table.append(entry)
        kinds = {}
        for fname, node in sorted(fields_of(key).items()):
            if fname in ("gid", "resource_type"):
                continue
            t = target_of(node)
            if t[0] in ("object", "array"):
                kinds[fname] = (t[0], intern(t[1], "{}.{}".format(entry[0], fname)))
            else:
                kinds[fname] = (t[0],)
        entry[1] = kinds
        return i

    def response_schema(op):
        for status in ("200", "201", 200, 201):
            resp = op.get("responses", {}).get(status)
            if resp is None:
                continue
            resp = deref(resp)
            schema = deref(resp.get("content", {}).get("application/json", {}).get("schema", {}))
            data = props(schema).get("data")
            if data is None:
                return None
            t = target_of(data)
            if t[0] in ("object", "array"):
                return intern(t[1], "{}.data".format(op.get("operationId", "?")))
            return None
        return None

    ops_out = []
    for method, path, const in OPS:
        op = spec["paths"][path][method.lower()]
        params = [deref(p) for p in spec["paths"][path].get("parameters", [])]
        params += [deref(p) for p in op.get("parameters", [])]
        query, fields = [], []
        for p in params:
            if p.get("in") != "query":
                continue
            query.append(p["name"])
            if p["name"] == "opt_fields":
                fields = deref(p["schema"]).get("items", {}).get("enum", [])
        body = []
        optional_body = False
        rb = op.get("requestBody")
        if rb:
            rb = deref(rb)
            optional_body = not rb.get("required", False)
            schema = deref(rb["content"]["application/json"]["schema"])
            data = deref(schema["properties"]["data"])
            body = sorted(n for n, p in props(data).items() if not read_only(p))
        ops_out.append((method, path, const, query, fields, body, optional_body, response_schema(op)))

    spec_paths = sorted(
        (m.upper(), p)
        for p, item in spec["paths"].items()
        for m in item
        if m in METHODS
    )

    out = []
    w = out.append
    w("//! Generated by scripts/gen-sandbox-spec.py from Asana's OpenAPI spec")
    w("//! (../shared/asana/asana_oas.yaml); do not edit by hand.")
    w("//!")
    w("//! Per operation: declared query parameters, the opt_fields enum, the")
    w("//! writable fields of the request body's `data`, and the schema of the")
    w("//! record it answers with; the schema table that dotted opt_fields paths")
    w("//! are resolved against; every (method, path) of the spec.")
    w("")
    w("pub struct OpSpec {")
    w("    pub method: &'static str,")
    w("    pub path: &'static str,")
    w("    pub query: &'static [&'static str],")
    w("    pub opt_fields: &'static [&'static str],")
    w("    pub body: &'static [&'static str],")
    w("    /// The request body is optional, so the official clients take it")
    w("    /// among the options and also send it as a `body` query parameter.")
    w("    pub optional_body: bool,")
    w("    /// Index into `SCHEMAS` of the record (or list item) answered.")
    w("    pub response: Option<usize>,")
    w("}")
    w("")
    w("/// What a field holds.")
    w("#[derive(Clone, Copy, Debug, PartialEq, Eq)]")
    w("pub enum Kind {")
    w("    /// A string, number, boolean, or an object the spec leaves opaque.")
    w("    Value,")
    w("    /// An array of such values.")
    w("    Values,")
    w("    /// An object of the schema at this index of `SCHEMAS`.")
    w("    Object(usize),")
    w("    /// An array of objects of the schema at this index.")
    w("    Array(usize),")
    w("}")
    w("")
    w("pub struct Schema {")
    w("    pub name: &'static str,")
    w("    /// Sorted by name; `gid` and `resource_type` are implied.")
    w("    pub fields: &'static [(&'static str, Kind)],")
    w("}")
    for method, path, const, query, fields, body, optional_body, resp in ops_out:
        w("")
        w("/// {} {}".format(method, path))
        w("pub const {}: OpSpec = OpSpec {{".format(const))
        w('    method: "{}",'.format(method))
        w('    path: "{}",'.format(path))
        for name, items in (("query", query), ("opt_fields", fields), ("body", body)):
            w("    {}: &[{}],".format(name, ", ".join('"{}"'.format(x) for x in items)))
        w("    optional_body: {},".format("true" if optional_body else "false"))
        w("    response: {},".format("Some({})".format(resp) if resp is not None else "None"))
        w("};")
    w("")
    w("/// Every operation above, for docs and tests.")
    w("pub const OPS: &[&OpSpec] = &[{}];".format(", ".join("&" + o[2] for o in ops_out)))
    w("")
    w("pub static SCHEMAS: &[Schema] = &[")
    for i, (name, kinds) in enumerate(table):
        items = []
        for fname, k in sorted(kinds.items()):
            if k[0] == "value":
                items.append('("{}", Kind::Value)'.format(fname))
            elif k[0] == "values":
                items.append('("{}", Kind::Values)'.format(fname))
            elif k[0] == "object":
                items.append('("{}", Kind::Object({}))'.format(fname, k[1]))
            else:
                items.append('("{}", Kind::Array({}))'.format(fname, k[1]))
        w("    // {}".format(i))
        w('    Schema {{ name: "{}", fields: &[{}] }},'.format(name, ", ".join(items)))
    w("];")
    w("")
    w("/// Every (method, path) the spec declares, sorted.")
    w("pub const SPEC_PATHS: &[(&str, &str)] = &[")
    for m, p in spec_paths:
        w('    ("{}", "{}"),'.format(m, p))
    w("];")
    text = "\n".join(out) + "\n"
    try:
        text = subprocess.run(
            ["rustfmt", "--edition", "2021", "--emit", "stdout"],
            input=text, capture_output=True, text=True, check=True,
        ).stdout
    except (OSError, subprocess.CalledProcessError) as e:
        print("gen-sandbox-spec: rustfmt failed ({}); output is unformatted".format(e), file=sys.stderr)
    sys.stdout.write(text)


main()
