"""JSON <-> protobuf mapping for the MyRouter API: pure, lossless, and cheap per chunk.

Why not ``google.protobuf.json_format``? It is slow (it walks descriptors and
builds intermediate objects for every message), it rejects unknown members,
and it cannot put them aside. Here each message type gets a *decoding plan*
compiled once from its descriptor: a dict from JSON member name to a small
converter. Decoding a chunk is then one dict lookup and one type check per
member, and one constructor call per message.

Faithfulness rules (the proto's header comment states them for users):

* A member the proto does not model goes into the message's ``extra`` Struct,
  untouched. So does a modelled member whose JSON type does not fit the field
  (``"index": "0"``): an odd upstream answer is kept, never a crash.
* ``null`` and absent are the same for modelled members.
* Numbers inside ``extra`` travel as doubles (that is what Struct holds);
  integral ones are written back as JSON integers.
* A few members have two JSON shapes, handled by name: message ``content``
  (string or parts array), ``tool_choice`` (string or object), an error's
  ``code`` (number or string), and usage in the OpenAI dialect
  (``prompt_tokens``/``completion_tokens`` and their ``*_details``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any, Final, TypeVar

from google.protobuf import struct_pb2
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message

from myrouter.chat.v1 import chat_pb2

__all__ = [
    "decode",
    "decode_each",
    "encode",
    "member_names",
    "struct_from_dict",
    "struct_to_dict",
]

M = TypeVar("M", bound=Message)

EXTRA: Final = "extra"
"""The field that holds unmodelled JSON members, in every message that has one."""

_INT32 = (-(2**31), 2**31 - 1)
_INT64 = (-(2**63), 2**63 - 1)


class _Mismatch:
    """Marker: the JSON value does not fit the field; keep it in ``extra`` instead."""


MISMATCH: Final = _Mismatch()
Converter = Callable[[Any], Any]


# --------------------------------------------------------------------------- #
# Struct <-> dict
# --------------------------------------------------------------------------- #


def struct_from_dict(value: Mapping[str, Any]) -> struct_pb2.Struct:
    """A Struct holding a JSON object."""
    struct = struct_pb2.Struct()
    struct.update(value)
    return struct


def struct_to_dict(struct: struct_pb2.Struct) -> dict[str, Any]:
    """The JSON object a Struct holds; integral numbers come back as ints."""
    return {key: _value_to_python(value) for key, value in struct.fields.items()}


def _value_to_python(value: struct_pb2.Value) -> Any:
    kind = value.WhichOneof("kind")
    if kind == "string_value":
        return value.string_value
    if kind == "number_value":
        number = value.number_value
        if number.is_integer() and abs(number) < 2**53:
            return int(number)
        return number
    if kind == "bool_value":
        return value.bool_value
    if kind == "struct_value":
        return struct_to_dict(value.struct_value)
    if kind == "list_value":
        return [_value_to_python(item) for item in value.list_value.values]
    return None


# --------------------------------------------------------------------------- #
# JSON -> protobuf
# --------------------------------------------------------------------------- #


class _Plan:
    """How to decode one message type: JSON member name -> (field name, converter).

    A spec whose field name is None has a converter that returns a dict of
    several fields at once (used where one JSON member fills one of two fields).
    """

    __slots__ = ("cls", "fields", "has_extra")

    def __init__(self, cls: type[Message]) -> None:
        self.cls = cls
        self.fields: dict[str, tuple[str | None, type | None, Converter]] = {}
        """JSON member -> (field, the JSON type taken as it is or None, converter)."""
        self.has_extra = EXTRA in cls.DESCRIPTOR.fields_by_name

    def decode(self, data: Mapping[str, Any]) -> Message:
        return self.cls(**self.kwargs(data))

    def kwargs(self, data: Mapping[str, Any]) -> dict[str, Any]:
        """The constructor arguments for `data`; nested messages stay plain dicts.

        Why dicts: the protobuf runtime builds a nested message from a dict in C,
        while a message object passed in is built once and then copied into its
        parent, level by level. Constructing only the top message halves the cost
        of a typical stream chunk (BENCHMARKS.md).
        """
        fields = self.fields
        kwargs: dict[str, Any] = {}
        extra: dict[str, Any] | None = None
        for key, value in data.items():
            spec = fields.get(key)
            if spec is not None:
                if value is None:
                    continue
                name, plain, convert = spec
                if type(value) is plain:  # a string or bool field given its type: as it is
                    kwargs[name] = value  # type: ignore[index]  # plain implies a name
                    continue
                converted = convert(value)
                if converted is not MISMATCH:
                    if name is None:
                        kwargs.update(converted)
                    else:
                        kwargs[name] = converted
                    continue
            if extra is None:
                extra = {}
            extra[key] = value
        if extra:
            if not self.has_extra:
                raise ValueError(f"{self.cls.__name__} has no field for {sorted(extra)}")
            kwargs[EXTRA] = struct_from_dict(extra)
        return kwargs


class _UsagePlan(_Plan):
    """Usage also reads the OpenAI dialect: *_tokens_details fill the cache/reasoning counts."""

    __slots__ = ()

    def kwargs(self, data: Mapping[str, Any]) -> dict[str, Any]:
        usage = super().kwargs(data)
        prompt = data.get("prompt_tokens_details")
        if type(prompt) is dict:
            _fill(usage, "cache_read_tokens", prompt.get("cached_tokens"))
            _fill(usage, "cache_write_tokens", prompt.get("cache_write_tokens"))
        completion = data.get("completion_tokens_details")
        if type(completion) is dict:
            _fill(usage, "reasoning_tokens", completion.get("reasoning_tokens"))
        return usage


def _fill(usage: dict[str, Any], field: str, value: Any) -> None:
    """Set a count from the OpenAI dialect unless the MyRouter spelling gave a non-zero one."""
    if not usage.get(field) and _int_in(_INT32)(value) is not MISMATCH:
        usage[field] = value


_PLANS: dict[str, _Plan] = {}


def _plan_for(descriptor: Descriptor) -> _Plan:
    plan = _PLANS.get(descriptor.full_name)
    if plan is not None:
        return plan
    cls = _message_class(descriptor)
    plan = _UsagePlan(cls) if cls is chat_pb2.Usage else _Plan(cls)
    _PLANS[descriptor.full_name] = plan  # before the fields: message types can nest
    for field in descriptor.fields:
        if field.name == EXTRA:
            continue
        plan.fields[field.name] = (field.name, _plain_type(field), _converter_for(field))
    return plan


def _plain_type(field: FieldDescriptor) -> type | None:
    """The JSON type a field takes without conversion: checked inline, no call per member."""
    if field.is_repeated:
        return None
    return {FieldDescriptor.TYPE_STRING: str, FieldDescriptor.TYPE_BOOL: bool}.get(field.type)


def _message_class(descriptor: Descriptor) -> type[Message]:
    cls = getattr(chat_pb2, descriptor.name)
    assert cls.DESCRIPTOR is descriptor
    return cls  # type: ignore[no-any-return]


def _converter_for(field: FieldDescriptor) -> Converter:
    if field.type == FieldDescriptor.TYPE_MESSAGE:
        message_type = field.message_type
        assert message_type is not None
        if message_type.full_name == "google.protobuf.Struct":
            single: Converter = _to_struct
        else:
            single = _message_converter(message_type)
    else:
        single = _SCALARS[field.type]
    if field.is_repeated:
        return _repeated(single)
    return single


def _message_converter(descriptor: Descriptor) -> Converter:
    """A nested message's converter: the constructor arguments, as a dict (see kwargs)."""

    plan: _Plan | None = None  # looked up on first use: message types can nest

    def convert(value: Any) -> Any:
        nonlocal plan
        if type(value) is not dict:
            return MISMATCH
        if plan is None:
            plan = _plan_for(descriptor)
        return plan.kwargs(value)

    return convert


def _repeated(single: Converter) -> Converter:
    def convert(value: Any) -> Any:
        if type(value) is not list:
            return MISMATCH
        items = [single(item) for item in value]
        # `in` compares by identity first; no converted value equals the marker.
        return MISMATCH if MISMATCH in items else items

    return convert


def _to_struct(value: Any) -> Any:
    return struct_from_dict(value) if type(value) is dict else MISMATCH


def _to_str(value: Any) -> Any:
    return value if type(value) is str else MISMATCH


def _to_bool(value: Any) -> Any:
    return value if type(value) is bool else MISMATCH


def _to_double(value: Any) -> Any:
    return value if type(value) is float or type(value) is int else MISMATCH


def _int_in(bounds: tuple[int, int]) -> Converter:
    low, high = bounds

    def convert(value: Any) -> Any:
        return value if type(value) is int and low <= value <= high else MISMATCH

    return convert


_INT_BOUNDS: Mapping[int, tuple[int, int]] = {
    FieldDescriptor.TYPE_INT32: _INT32,
    FieldDescriptor.TYPE_INT64: _INT64,
}

_SCALARS: Mapping[int, Converter] = {
    FieldDescriptor.TYPE_STRING: _to_str,
    FieldDescriptor.TYPE_BOOL: _to_bool,
    FieldDescriptor.TYPE_DOUBLE: _to_double,
    **{kind: _int_in(bounds) for kind, bounds in _INT_BOUNDS.items()},
}


class _Shared:
    """One JSON member that two fields share, told apart by the JSON value's type.

    A string fills the field named like the member; any other shape fills
    `other`, by that field's own converter. With `text_too` (`other` is then an
    integer field), a number also leaves its text in the string field, so that
    field always says it. Both directions are derived from this one statement:
    `_Plan` decoding (see `_install_special_members`) and `encode`, which writes
    `other` back under the member's name; with `text_too`, only while the string
    field still says it.
    """

    __slots__ = ("member", "other", "text_too")

    def __init__(self, member: str, other: str, *, text_too: bool = False) -> None:
        self.member, self.other, self.text_too = member, other, text_too

    def converter(self, other: Converter, other_type: int) -> Converter:
        """The decoding converter of the member, given `other`'s converter and field type."""
        member, field = self.member, self.other
        if self.text_too:
            low, high = _INT_BOUNDS[other_type]  # checked inline: no call per number

            def both(value: Any) -> Any:
                if type(value) is int and low <= value <= high:
                    return {member: str(value), field: value}
                return {member: value} if type(value) is str else MISMATCH

            return both

        def one(value: Any) -> Any:
            if type(value) is str:
                return {member: value}
            converted = other(value)
            return MISMATCH if converted is MISMATCH else {field: converted}

        return one


_SHARED: Mapping[str, _Shared] = {
    # "content": the text, or an array of parts (multimodal)
    "myrouter.chat.v1.ChatMessage": _Shared("content", "content_parts"),
    # an error's "code": a name ("server_error"), or an HTTP status as a number
    "myrouter.chat.v1.StreamError": _Shared("code", "http_status", text_too=True),
}
"""Message type -> its shared member (at most one per type)."""


def _install_special_members() -> None:
    """Members whose JSON shape varies, and JSON aliases of modelled fields."""
    for full_name, shared in _SHARED.items():
        descriptor = _message_descriptor(full_name)
        plan = _plan_for(descriptor)
        _, _, other = plan.fields.pop(shared.other)  # no JSON member of its own
        member, other_field = (descriptor.fields_by_name[n] for n in (shared.member, shared.other))
        assert member.number < other_field.number  # so `encode` writes `other` over it
        other_type = other_field.type
        plan.fields[shared.member] = (None, None, shared.converter(other, other_type))

    named = _message_converter(chat_pb2.NamedToolChoice.DESCRIPTOR)

    def tool_choice(value: Any) -> Any:
        if type(value) is str:
            return chat_pb2.ToolChoice(mode=value)
        tool = named(value)
        return MISMATCH if tool is MISMATCH else chat_pb2.ToolChoice(tool=tool)

    _plan_for(chat_pb2.ChatCompletionRequest.DESCRIPTOR).fields["tool_choice"] = (
        "tool_choice",
        None,
        tool_choice,
    )

    usage = _plan_for(chat_pb2.Usage.DESCRIPTOR)  # the OpenAI dialect, read but never written
    usage.fields["prompt_tokens"] = ("input_tokens", None, _int_in(_INT32))
    usage.fields["completion_tokens"] = ("output_tokens", None, _int_in(_INT32))


def _message_descriptor(full_name: str) -> Descriptor:
    descriptor = chat_pb2.DESCRIPTOR.message_types_by_name[full_name.rpartition(".")[2]]
    assert descriptor.full_name == full_name
    return descriptor


_install_special_members()


_PLANS_BY_CLASS: dict[type[Message], _Plan] = {}
"""`decode`'s own cache: a class lookup, not a descriptor name built per call (~0.5 µs)."""


def _plan_of(cls: type[Message]) -> _Plan:
    plan = _PLANS_BY_CLASS.get(cls)
    if plan is None:
        descriptor: Descriptor = cls.DESCRIPTOR  # type: ignore[assignment]
        plan = _PLANS_BY_CLASS[cls] = _plan_for(descriptor)
    return plan


def decode(cls: type[M], data: Mapping[str, Any]) -> M:
    """Decode a parsed JSON object into a message of type `cls`; never raises on odd values."""
    return _plan_of(cls).decode(data)  # type: ignore[return-value]


def decode_each(
    cls: type[M], field: str, item: type[Message], data: Iterable[Mapping[str, Any]]
) -> M:
    """A `cls` whose repeated `field` holds each object of `data` decoded as an `item`.

    As `decode` would give them one by one, but built by one constructor call:
    the repeated messages are made in place from their arguments (see
    `_Plan.kwargs`), not made apart and then copied into the container.
    """
    kwargs = _plan_of(item).kwargs
    return cls(**{field: [kwargs(one) for one in data]})


# --------------------------------------------------------------------------- #
# protobuf -> JSON
# --------------------------------------------------------------------------- #

_ALWAYS_WRITTEN: Mapping[str, frozenset[str]] = {
    # Indexes are meaningful at 0, which proto3 would otherwise leave out.
    "myrouter.chat.v1.Choice": frozenset({"index"}),
    "myrouter.chat.v1.ChunkChoice": frozenset({"index"}),
    "myrouter.chat.v1.ToolCallDelta": frozenset({"index"}),
}


def member_names(descriptor: Descriptor) -> frozenset[str]:
    """The names an `extra` member of this message may not take: its fields' own names.

    They include every JSON member the fields are written as, since a shared
    member is named after its string field (see `_Shared`).
    """
    return frozenset(field.name for field in descriptor.fields if field.name != EXTRA)


def encode(message: Message) -> dict[str, Any]:
    """The JSON object a message stands for: `extra` members first, modelled fields on top.

    Modelled fields always win over `extra` members of the same name, which is
    the rule that makes request `extra` unable to override a checked field.
    """
    descriptor = message.DESCRIPTOR
    full_name = descriptor.full_name
    shared = _SHARED.get(full_name)
    out: dict[str, Any] = {}
    if EXTRA in descriptor.fields_by_name and message.HasField(EXTRA):
        out.update(struct_to_dict(getattr(message, EXTRA)))
    for name in _ALWAYS_WRITTEN.get(full_name, ()):
        if name not in out:  # an odd value kept in extra stays as it was
            out[name] = getattr(message, name)
    for field, value in message.ListFields():
        name = field.name
        if name == EXTRA:
            continue
        if shared is not None and name == shared.other:
            if shared.text_too and getattr(message, shared.member) != str(value):
                continue  # the text was changed since: it wins
            name = shared.member
        if field.type == FieldDescriptor.TYPE_MESSAGE:
            encoded: Any = (
                [_encode_message(item) for item in value]
                if field.is_repeated
                else _encode_message(value)
            )
        elif field.is_repeated:
            encoded = list(value)
        else:
            encoded = value
        out[name] = encoded
    return out


def _encode_message(message: Message) -> Any:
    if isinstance(message, struct_pb2.Struct):
        return struct_to_dict(message)
    if isinstance(message, chat_pb2.ToolChoice):
        if message.WhichOneof("choice") == "tool":
            return encode(message.tool)
        return message.mode
    return encode(message)
