"""PATCH bodies: JSON merge patch, strategic merge patch, JSON patch and apply patches.

Controllers (vnode's status loop among them) and kubectl write through PATCH, and each
patch type has its own list semantics: a merge patch replaces lists, a strategic merge
patch merges some lists by a key (pod conditions by ``type``) and replaces others (pod
``containerStatuses``, node ``taints``), and a JSON patch fails as a whole. A client
that works against this emulator must see the same resulting object as against a real
server, so the strategic merge rules follow the upstream algorithm (directives
``$patch``, ``$setElementOrder/``, ``$retainKeys``, ``$deleteFromPrimitiveList/``; list
order: patch items in patch order, interleaved with the server-only items) and the
per-field patch strategies of the served kinds.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from typing import Any

import yaml

from vnode.sandbox.kubeapi.status import StatusError, bad_request

# ---------------------------------------------------------------------------------------
# Patch metadata of the served kinds: field -> (type of its elements/value, strategy,
# merge key). A field that is absent replaces as a whole (lists) or merges (maps).

_Field = tuple[str | None, str, str]

_OBJECT_META: dict[str, _Field] = {
    "ownerReferences": (None, "merge", "uid"),
    "finalizers": (None, "merge", ""),
}

_CONTAINER: dict[str, _Field] = {
    "ports": (None, "merge", "containerPort"),
    "env": (None, "merge", "name"),
    "volumeMounts": (None, "merge", "mountPath"),
    "volumeDevices": (None, "merge", "devicePath"),
}

_SCHEMA: dict[str, dict[str, _Field]] = {
    "ObjectMeta": _OBJECT_META,
    "Container": _CONTAINER,
    "PodSpec": {
        "containers": ("Container", "merge", "name"),
        "initContainers": ("Container", "merge", "name"),
        "ephemeralContainers": ("Container", "merge", "name"),
        "volumes": (None, "merge,retainKeys", "name"),
        "imagePullSecrets": (None, "merge", "name"),
        "hostAliases": (None, "merge", "ip"),
        "topologySpreadConstraints": (None, "merge", "topologyKey"),
        "schedulingGates": (None, "merge", "name"),
        "resourceClaims": (None, "merge,retainKeys", "name"),
        # tolerations, readinessGates: no strategy upstream, so they are replaced.
    },
    "PodStatus": {
        "conditions": (None, "merge", "type"),
        "podIPs": (None, "merge", "ip"),
        "hostIPs": (None, "merge", "ip"),
        "resourceClaimStatuses": (None, "merge", "name"),
        # containerStatuses and friends carry no strategy: a patch replaces the list.
    },
    "PodTemplateSpec": {"metadata": ("ObjectMeta", "", ""), "spec": ("PodSpec", "", "")},
    "Pod": {
        "metadata": ("ObjectMeta", "", ""),
        "spec": ("PodSpec", "", ""),
        "status": ("PodStatus", "", ""),
    },
    "NodeSpec": {"podCIDRs": (None, "merge", "")},  # taints: replaced
    "NodeStatus": {
        "conditions": (None, "merge", "type"),
        "addresses": (None, "merge", "type"),
    },
    "Node": {
        "metadata": ("ObjectMeta", "", ""),
        "spec": ("NodeSpec", "", ""),
        "status": ("NodeStatus", "", ""),
    },
    "NamespaceStatus": {"conditions": (None, "merge", "type")},
    "Namespace": {"metadata": ("ObjectMeta", "", ""), "status": ("NamespaceStatus", "", "")},
    "JobSpec": {"template": ("PodTemplateSpec", "", "")},
    "JobStatus": {"conditions": (None, "merge", "type")},
    "Job": {
        "metadata": ("ObjectMeta", "", ""),
        "spec": ("JobSpec", "", ""),
        "status": ("JobStatus", "", ""),
    },
    "ServiceAccount": {
        "metadata": ("ObjectMeta", "", ""),
        "secrets": (None, "merge", "name"),
    },
}

_DEFAULT_ROOT: dict[str, _Field] = {"metadata": ("ObjectMeta", "", "")}


def _fields_of(type_name: str | None) -> dict[str, _Field]:
    return _SCHEMA.get(type_name or "", {})


# ---------------------------------------------------------------------------------------
# Errors


class _PatchError(Exception):
    """A strategic merge failure; ``code`` as the real server maps that failure."""

    def __init__(self, message: str, code: int = 500) -> None:
        super().__init__(message)
        self.code = code


def _to_status(err: _PatchError) -> StatusError:
    if err.code == 400:
        return bad_request(str(err))
    if err.code == 422:
        return StatusError(422, None, str(err))
    # Errors the real server does not classify come back as 500 with no reason.
    return StatusError(500, None, str(err))


_BAD_RETAIN_KEYS = "invalid patch format of retainKeys"
_BAD_ORDER_LIST = "invalid patch format of setElementOrder list"
_BAD_PRIMITIVE_LIST = "invalid patch format of primitive list"


def _go_repr(value: Any) -> str:
    """Roughly how Go's %v prints a decoded JSON value (for error messages only)."""
    if isinstance(value, dict):
        inner = " ".join(f"{k}:{_go_repr(value[k])}" for k in sorted(value))
        return f"map[{inner}]"
    if isinstance(value, list):
        return "[" + " ".join(_go_repr(v) for v in value) + "]"
    if value is None:
        return "<nil>"
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _no_merge_key(item: dict[str, Any], key: str) -> _PatchError:
    return _PatchError(f"map: {_go_repr(item)} does not contain declared merge key: {key}")


# ---------------------------------------------------------------------------------------
# JSON merge patch (RFC 7386)


def json_merge_patch(target: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    """Apply an RFC 7386 merge patch; ``target`` is not modified."""
    result = _merge_patch_value(copy.deepcopy(target), patch)
    if not isinstance(result, dict):
        raise bad_request("Invalid JSON Patch")
    return result


def _merge_patch_value(target: Any, patch: Any) -> Any:
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    out = target if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = _merge_patch_value(out.get(key), value)
    return out


# ---------------------------------------------------------------------------------------
# Strategic merge patch


def strategic_merge_patch(
    target: dict[str, Any], patch: dict[str, Any], kind: str
) -> dict[str, Any]:
    """Apply a strategic merge patch to an object of ``kind``; ``target`` is not modified.

    Raises StatusError as the real server answers a malformed patch (400 for bad
    directive formats, 500 for a list element missing its merge key).
    """
    root = _SCHEMA.get(kind, _DEFAULT_ROOT)
    try:
        return _merge_map(copy.deepcopy(target), copy.deepcopy(patch), root)
    except _PatchError as e:
        raise _to_status(e) from None


_DIRECTIVE = "$patch"
_RETAIN_KEYS = "$retainKeys"
_ORDER_PREFIX = "$setElementOrder/"
_DELETE_PREFIX = "$deleteFromPrimitiveList/"


def _merge_map(
    original: dict[str, Any] | None, patch: dict[str, Any], fields: dict[str, _Field]
) -> dict[str, Any]:
    if _DIRECTIVE in patch:
        directive = patch[_DIRECTIVE]
        if directive == "replace":
            del patch[_DIRECTIVE]
            replaced: dict[str, Any] = _clean(patch)
            return replaced
        if directive == "delete":
            return {}
        raise _PatchError(f"unknown patch type: {directive} in map: {_go_repr(patch)}")
    if original is None:
        original = {}
    _apply_retain_keys(original, patch)
    _apply_element_orders(original, patch, fields)
    for key, patch_value in patch.items():
        is_delete_list = key.startswith(_DELETE_PREFIX)
        name = key[len(_DELETE_PREFIX) :] if is_delete_list else key
        if patch_value is None:
            original.pop(name, None)
            continue
        if name not in original:
            if not is_delete_list:
                original[name] = _clean(patch_value)
            continue
        current = original[name]
        if type(current) is not type(patch_value):
            if not is_delete_list:
                original[name] = _clean(patch_value)
            continue
        elem_type, strategy, merge_key = fields.get(name, (None, "", ""))
        strategies = strategy.split(",")
        if isinstance(current, dict):
            if "replace" in strategies:
                original[name] = _clean(patch_value)
            else:
                original[name] = _merge_map(current, patch_value, _fields_of(elem_type))
        elif isinstance(current, list):
            if "merge" in strategies:
                original[name] = _merge_list(
                    current, patch_value, _fields_of(elem_type), merge_key, is_delete_list
                )
            else:
                original[name] = _clean(patch_value)
        else:
            original[name] = patch_value
    return original


def _apply_retain_keys(original: dict[str, Any], patch: dict[str, Any]) -> None:
    if _RETAIN_KEYS not in patch:
        return
    keep = patch.pop(_RETAIN_KEYS)
    if not isinstance(keep, list):
        raise _PatchError(_BAD_RETAIN_KEYS, 400)
    for key, value in patch.items():
        if value is None or key.startswith((_DELETE_PREFIX, _ORDER_PREFIX)):
            continue
        if key not in keep:
            raise _PatchError(_BAD_RETAIN_KEYS, 400)
    for key in list(original):
        if key not in keep:
            del original[key]


def _apply_element_orders(
    original: dict[str, Any], patch: dict[str, Any], fields: dict[str, _Field]
) -> None:
    """Handle ``$setElementOrder/<list>`` together with the patch's own ``<list>``."""
    for key in [k for k in patch if k.startswith(_ORDER_PREFIX)]:
        order = patch.pop(key)
        if not isinstance(order, list):
            raise _PatchError(_BAD_ORDER_LIST, 400)
        name = key[len(_ORDER_PREFIX) :]
        elem_type, strategy, merge_key = fields.get(name, (None, "", ""))
        in_original, in_patch = name in original, name in patch
        original_list = original.get(name) if in_original else None
        patch_list = patch.get(name) if in_patch else None
        if in_original and not isinstance(original_list, list):
            raise _PatchError(f"invalid type for {name}", 400)
        if in_patch and not isinstance(patch_list, list):
            raise _PatchError(_BAD_ORDER_LIST, 400)
        _check_order_list(patch_list or [], order, merge_key)
        if in_original and in_patch:
            assert isinstance(original_list, list) and isinstance(patch_list, list)
            if "merge" in strategy.split(","):
                merged = _merge_list(
                    list(original_list), patch_list, _fields_of(elem_type), merge_key, False
                )
            else:
                merged = _clean(patch_list)
        elif in_original:
            assert isinstance(original_list, list)
            merged = original_list
        elif in_patch:
            assert isinstance(patch_list, list)
            merged = _clean(patch_list)
        else:
            continue
        wanted = [_identity(o, merge_key) for o in order]
        patch_items = [m for m in merged if _identity(m, merge_key) in wanted]
        server_items = [m for m in merged if _identity(m, merge_key) not in wanted]
        original[name] = _interleave(
            patch_items, server_items, order, original_list or [], merge_key
        )
        patch.pop(name, None)


def _check_order_list(patch_list: list[Any], order: list[Any], merge_key: str) -> None:
    # Every (non-delete) patch item must appear in the order list, in the same order.
    items = [p for p in patch_list if not (isinstance(p, dict) and p.get(_DIRECTIVE) == "delete")]
    if not items or not order:
        return
    pos = 0
    for item in items:
        ident = _identity(item, merge_key)
        while pos < len(order) and _identity(order[pos], merge_key) != ident:
            pos += 1
        if pos >= len(order):
            raise _PatchError(_BAD_ORDER_LIST, 400)


def _identity(item: Any, merge_key: str) -> Any:
    if merge_key and isinstance(item, dict):
        return json.dumps(item.get(merge_key), sort_keys=True)
    return json.dumps(item, sort_keys=True)


def _merge_list(
    original: list[Any],
    patch: list[Any],
    fields: dict[str, _Field],
    merge_key: str,
    is_delete_list: bool,
) -> list[Any]:
    if not original and not patch:
        return original
    kinds = {type(v) for v in [*original, *patch]}
    if list in kinds:
        raise _PatchError("lists of lists are not supported", 422)
    if len(kinds) > 1:
        raise _PatchError("list element types are not identical")
    if dict not in kinds:
        if is_delete_list:
            drop = {_identity(p, "") for p in patch}
            return [o for o in original if _identity(o, "") not in drop]
        merged: list[Any] = []
        seen: set[str] = set()
        for v in [*original, *patch]:
            ident = _identity(v, "")
            if ident not in seen:
                seen.add(ident)
                merged.append(v)
        in_patch = {_identity(p, "") for p in patch}
        return _interleave(
            [m for m in merged if _identity(m, "") in in_patch],
            [m for m in merged if _identity(m, "") not in in_patch],
            patch,
            original,
            "",
        )
    if not merge_key:
        raise _PatchError("cannot merge lists without merge key for type map")
    original, patch = _special_elements(original, patch, merge_key)
    server_order = list(original)  # before new items are appended
    for item in patch:
        if merge_key not in item:
            raise _no_merge_key(item, merge_key)
        found = _find(original, merge_key, item[merge_key])
        if found is None:
            original.append(_clean(item))
        else:
            original[found] = _merge_map(original[found], item, fields)
    wanted = {_identity(p, merge_key) for p in patch}
    return _interleave(
        [m for m in original if _identity(m, merge_key) in wanted],
        [m for m in original if _identity(m, merge_key) not in wanted],
        patch,
        server_order,
        merge_key,
    )


def _special_elements(
    original: list[Any], patch: list[Any], merge_key: str
) -> tuple[list[Any], list[Any]]:
    """Apply ``$patch: delete`` elements; ``$patch: replace`` makes the patch the list."""
    plain: list[Any] = []
    replace = False
    for item in patch:
        if _DIRECTIVE not in item:
            plain.append(item)
            continue
        directive = item[_DIRECTIVE]
        if directive == "delete":
            if merge_key not in item:
                raise _no_merge_key(item, merge_key)
            original = [o for o in original if o.get(merge_key) != item[merge_key]]
        elif directive == "replace":
            replace = True
        elif directive == "merge":
            raise _PatchError("merging lists cannot yet be specified in the patch")
        else:
            raise _PatchError(f"unknown patch type: {directive} in map: {_go_repr(item)}")
    if replace:
        return [_clean(p) for p in plain], []
    return original, plain


def _find(items: list[Any], key: str, value: Any) -> int | None:
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            raise _PatchError(f"value for key {i} is not a map.")
        if key in item and item[key] == value:
            return i
    return None


def _interleave(
    patch_items: list[Any],
    server_items: list[Any],
    patch_order: list[Any],
    server_order: list[Any],
    merge_key: str,
) -> list[Any]:
    """Patch items in patch order, server-only items in server order, merged so that
    each server-only item goes before the first patch item that the server had after it."""
    if merge_key:
        for item in [*patch_items, *server_items, *server_order]:
            if not isinstance(item, dict) or merge_key not in item:
                raise _no_merge_key(item if isinstance(item, dict) else {}, merge_key)

    def position(order: list[Any], item: Any) -> int:
        ident = _identity(item, merge_key)
        for i, o in enumerate(order):
            if _identity(o, merge_key) == ident:
                return i
        return -1

    right = sorted(patch_items, key=lambda x: position(patch_order, x))
    left = sorted(server_items, key=lambda x: position(server_order, x))
    out: list[Any] = []
    i = j = 0
    while i < len(left) or j < len(right):
        if i >= len(left):
            out.append(right[j])
            j += 1
        elif j >= len(right):
            out.append(left[i])
            i += 1
        else:
            li, ri = position(server_order, left[i]), position(server_order, right[j])
            if li >= 0 and ri >= 0 and li < ri:
                out.append(left[i])
                i += 1
            else:
                out.append(right[j])
                j += 1
    return out


def _clean(value: Any) -> Any:
    """A patch value stored as is: drop nulls and leftover directives, as decoding
    into the typed object does on the real server."""
    if isinstance(value, dict):
        return {
            k: _clean(v)
            for k, v in value.items()
            if v is not None
            and k not in (_DIRECTIVE, _RETAIN_KEYS)
            and not k.startswith((_ORDER_PREFIX, _DELETE_PREFIX))
        }
    if isinstance(value, list):
        return [
            _clean(v)
            for v in value
            if not (
                isinstance(v, dict) and v.get(_DIRECTIVE) in ("delete", "replace") and len(v) <= 1
            )
        ]
    return value


# ---------------------------------------------------------------------------------------
# JSON patch (RFC 6902)


class _JSONPatchError(Exception):
    pass


def json_patch(target: dict[str, Any], ops: list[Any]) -> dict[str, Any]:
    """Apply RFC 6902 operations; any failure is the real server's 422."""
    doc: Any = copy.deepcopy(target)
    try:
        for op in ops:
            doc = _apply_op(doc, op)
    except _JSONPatchError:
        raise StatusError(
            422,
            "Invalid",
            "the server rejected our request due to an error in our request",
            details={},
        ) from None
    if not isinstance(doc, dict):
        raise StatusError(
            422,
            "Invalid",
            "the server rejected our request due to an error in our request",
            details={},
        )
    return doc


def _split_pointer(path: Any) -> list[str]:
    if not isinstance(path, str):
        raise _JSONPatchError("path must be a string")
    if path == "":
        return []
    if not path.startswith("/"):
        raise _JSONPatchError(f"invalid pointer {path}")
    return [p.replace("~1", "/").replace("~0", "~") for p in path[1:].split("/")]


def _list_index(container: list[Any], token: str, *, allow_end: bool) -> int:
    if token == "-" and allow_end:
        return len(container)
    if not token.isdigit() or (len(token) > 1 and token.startswith("0")):
        raise _JSONPatchError(f"bad index {token}")
    index = int(token)
    limit = len(container) if allow_end else len(container) - 1
    if index > limit:
        raise _JSONPatchError(f"index out of range {token}")
    return index


def _parent(doc: Any, tokens: list[str]) -> Any:
    cur = doc
    for token in tokens[:-1]:
        if isinstance(cur, dict):
            if token not in cur:
                raise _JSONPatchError("missing path")
            cur = cur[token]
        elif isinstance(cur, list):
            cur = cur[_list_index(cur, token, allow_end=False)]
        else:
            raise _JSONPatchError("missing path")
    if not isinstance(cur, (dict, list)):
        raise _JSONPatchError("missing path")
    return cur


def _get(doc: Any, tokens: list[str]) -> Any:
    if not tokens:
        return doc
    parent, last = _parent(doc, tokens), tokens[-1]
    if isinstance(parent, dict):
        if last not in parent:
            raise _JSONPatchError("missing key")
        return parent[last]
    return parent[_list_index(parent, last, allow_end=False)]


def _add(doc: Any, tokens: list[str], value: Any) -> Any:
    if not tokens:
        return value
    parent, last = _parent(doc, tokens), tokens[-1]
    if isinstance(parent, dict):
        parent[last] = value
    else:
        parent.insert(_list_index(parent, last, allow_end=True), value)
    return doc


def _remove(doc: Any, tokens: list[str]) -> tuple[Any, Any]:
    if not tokens:
        raise _JSONPatchError("cannot remove the root")
    parent, last = _parent(doc, tokens), tokens[-1]
    if isinstance(parent, dict):
        if last not in parent:
            raise _JSONPatchError("missing key")
        return doc, parent.pop(last)
    return doc, parent.pop(_list_index(parent, last, allow_end=False))


def _apply_op(doc: Any, op: Any) -> Any:
    if not isinstance(op, dict):
        raise _JSONPatchError("operation must be an object")
    kind = op.get("op")
    tokens = _split_pointer(op.get("path"))
    if kind == "add":
        if "value" not in op:
            raise _JSONPatchError("missing value")
        return _add(doc, tokens, copy.deepcopy(op["value"]))
    if kind == "remove":
        return _remove(doc, tokens)[0]
    if kind == "replace":
        if "value" not in op:
            raise _JSONPatchError("missing value")
        if not tokens:
            return copy.deepcopy(op["value"])
        _get(doc, tokens)  # must exist
        parent, last = _parent(doc, tokens), tokens[-1]
        if isinstance(parent, dict):
            parent[last] = copy.deepcopy(op["value"])
        else:
            parent[_list_index(parent, last, allow_end=False)] = copy.deepcopy(op["value"])
        return doc
    if kind in ("move", "copy"):
        source = _split_pointer(op.get("from"))
        if kind == "move":
            if tokens[: len(source)] == source and len(tokens) > len(source):
                raise _JSONPatchError("cannot move into a child")
            doc, value = _remove(doc, source)
        else:
            value = copy.deepcopy(_get(doc, source))
        return _add(doc, tokens, value)
    if kind == "test":
        try:
            have = _get(doc, tokens)
        except _JSONPatchError:
            # A missing key (under an existing parent) tests equal to null, as the
            # server's library has it; a missing parent still fails.
            _parent(doc, tokens)
            have = None
        if not _json_equal(have, op.get("value")):
            raise _JSONPatchError("test failed")
        return doc
    raise _JSONPatchError(f"Unexpected kind: {kind}")


def _json_equal(a: Any, b: Any) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return a == b
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_json_equal(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_json_equal(x, y) for x, y in zip(a, b, strict=True))
    return type(a) is type(b) and bool(a == b)


# ---------------------------------------------------------------------------------------
# Dispatch by Content-Type


def go_json_error(body: bytes) -> str | None:
    """Why ``body`` is not JSON, worded like Go's encoding/json; None when it is valid."""
    text = body.decode("utf-8", errors="replace")
    try:
        json.loads(text)
    except json.JSONDecodeError as e:
        if e.pos >= len(text.rstrip()):
            return "unexpected end of JSON input"
        ch = text[e.pos]
        where = {
            "Expecting value": "looking for beginning of value",
            "Expecting property name enclosed in double quotes": (
                "looking for beginning of object key string"
            ),
            "Expecting ':' delimiter": "after object key",
            "Extra data": "after top-level value",
        }.get(e.msg)
        if where is None and e.msg == "Expecting ',' delimiter":
            opener = _innermost_opener(text, e.pos)
            where = "after object key:value pair" if opener == "{" else "after array element"
        shown = ch if ch not in "'\\" else "\\" + ch
        return f"invalid character '{shown}' {where or 'in literal'}"
    return None


def _innermost_opener(text: str, pos: int) -> str:
    stack: list[str] = []
    in_string = escaped = False
    for ch in text[:pos]:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            stack.append(ch)
        elif ch in "]}" and stack:
            stack.pop()
    return stack[-1] if stack else ""


def _load_json(body: bytes) -> Any:
    problem = go_json_error(body)
    if problem is not None:
        raise bad_request(problem)
    return json.loads(body)


def _json_patch_body(target: dict[str, Any], body: bytes, kind: str) -> dict[str, Any]:
    ops = _load_json(body)
    if not isinstance(ops, list):
        raise bad_request(
            "json: cannot unmarshal "
            + ("object" if isinstance(ops, dict) else type(ops).__name__)
            + " into Go value of type jsonpatch.Patch"
        )
    return json_patch(target, ops)


def _merge_patch_body(target: dict[str, Any], body: bytes, kind: str) -> dict[str, Any]:
    patch = _load_json(body)
    if not isinstance(patch, dict):
        raise bad_request("Invalid JSON Patch")
    return json_merge_patch(target, patch)


def _strategic_body(target: dict[str, Any], body: bytes, kind: str) -> dict[str, Any]:
    patch = _load_json(body)
    if not isinstance(patch, dict):
        raise bad_request(
            "json: cannot unmarshal "
            + ("array" if isinstance(patch, list) else type(patch).__name__)
            + " into Go value of type map[string]interface {}"
        )
    return strategic_merge_patch(target, patch, kind)


def _apply_body(target: dict[str, Any], body: bytes, kind: str) -> dict[str, Any]:
    # Server-side apply, pragmatically: the applied configuration is merged into the
    # live object with strategic merge semantics (keyed lists merge, atomic lists are
    # replaced). Field ownership is not tracked. kubectl sends JSON, which is YAML too.
    try:
        config = yaml.safe_load(body.decode("utf-8", errors="replace"))
    except yaml.YAMLError as e:
        raise bad_request(f"error decoding YAML: {e}") from None
    if not isinstance(config, dict):
        raise bad_request("error decoding YAML: the applied configuration must be an object")
    root = _SCHEMA.get(kind, _DEFAULT_ROOT)
    merged: dict[str, Any] = _merge_applied(copy.deepcopy(target), config, root)
    return merged


def _merge_applied(live: Any, config: Any, fields: dict[str, _Field]) -> Any:
    """Merge an applied configuration: maps merge, keyed and set lists merge with new
    items after the live ones (as server-side apply orders them), other lists and
    scalars are replaced."""
    if not isinstance(config, dict) or not isinstance(live, dict):
        return _clean(config)
    for key, value in config.items():
        if value is None:
            live.pop(key, None)
            continue
        elem_type, strategy, merge_key = fields.get(key, (None, "", ""))
        current = live.get(key)
        if isinstance(value, dict) and isinstance(current, dict):
            live[key] = _merge_applied(current, value, _fields_of(elem_type))
        elif isinstance(value, list) and isinstance(current, list) and "merge" in strategy:
            live[key] = _merge_applied_list(current, value, _fields_of(elem_type), merge_key)
        else:
            live[key] = _clean(value)
    return live


def _merge_applied_list(
    live: list[Any], config: list[Any], fields: dict[str, _Field], merge_key: str
) -> list[Any]:
    out = list(live)
    for item in config:
        if merge_key and isinstance(item, dict):
            found = _find(out, merge_key, item.get(merge_key)) if merge_key in item else None
            if found is None:
                out.append(_clean(item))
            else:
                out[found] = _merge_applied(out[found], item, fields)
        elif all(_identity(o, "") != _identity(item, "") for o in out):
            out.append(_clean(item))
    return out


PatchFn = Callable[[dict[str, Any], bytes, str], dict[str, Any]]

PATCH_TYPES: dict[str, PatchFn] = {
    "application/json-patch+json": _json_patch_body,
    "application/merge-patch+json": _merge_patch_body,
    "application/strategic-merge-patch+json": _strategic_body,
    "application/apply-patch+yaml": _apply_body,
}

APPLY_PATCH = "application/apply-patch+yaml"


def media_type(content_type: str) -> str:
    """``application/merge-patch+json; charset=utf-8`` -> ``application/merge-patch+json``."""
    return content_type.split(";", 1)[0].strip().lower()


def apply_patch(
    target: dict[str, Any], content_type: str, body: bytes, kind: str
) -> dict[str, Any]:
    """Apply a PATCH request body of the given Content-Type to ``target`` (not modified).

    415 for a Content-Type that is not a patch type (``application/json`` included),
    400 for a body that does not parse, 422 for a JSON patch that does not apply.
    """
    fn = PATCH_TYPES.get(media_type(content_type))
    if fn is None:
        raise StatusError(415, "UnsupportedMediaType", "415: Unsupported Media Type", details={})
    return fn(target, body, kind)


def bad_json_body(kind: str, body: bytes) -> StatusError | None:
    """For a create/update body: the real server's 400 when ``body`` is not JSON
    (``the object provided is unrecognized (must be of type Pod): ...``), else None."""
    problem = go_json_error(body)
    if problem is None:
        return None
    text = body.decode("utf-8", errors="replace")
    # The server quotes the body up to its first 30 characters (with " ..." appended).
    shown = text if len(text) <= 30 else text[:30] + " ..."
    return bad_request(
        f"the object provided is unrecognized (must be of type {kind}): "
        f"couldn't get version/kind; json parse error: {problem} ({shown})"
    )
