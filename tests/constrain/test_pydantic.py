"""pydantic models and types become grammars whose outputs validate back into them."""

from __future__ import annotations

import datetime
import enum
from typing import Literal, Optional, Union

import numpy as np
import pydantic
import pytest

from onrails import GrammarCompiler, Matcher, SchemaError
from onrails.grammars.schema import pydantic_schema
from tests.constrain.small_vocab import small_vocabulary
from tests.constrain.walks import random_walk


class Color(str, enum.Enum):
    RED = "red"
    GREEN = "green"


class Address(pydantic.BaseModel):
    street: str = pydantic.Field(max_length=20)
    zip_code: str = pydantic.Field(pattern=r"^[0-9]{5}$")


class Person(pydantic.BaseModel):
    name: str
    age: int = pydantic.Field(ge=0, le=130)
    height: float = pydantic.Field(gt=0, lt=3)
    color: Color = Color.RED
    address: Optional[Address] = None
    tags: list[str] = pydantic.Field(default_factory=list, max_length=3)
    kind: Literal["a", "b"] = "a"
    born: Optional[datetime.date] = None


class Tree(pydantic.BaseModel):
    # Bounded: pydantic reads an integer written with a fraction ("12.0", valid JSON Schema
    # integers) only while it fits a double exactly.
    value: int = pydantic.Field(ge=-(10**9), le=10**9)
    children: list["Tree"] = []


@pytest.fixture(scope="module")
def compiler() -> GrammarCompiler:
    return GrammarCompiler(small_vocabulary())


def _accepts(compiled, text: str) -> bool:  # type: ignore[no-untyped-def]
    m = Matcher(compiled)
    return m.advance_bytes(text.encode()) and m.is_accepting()


def _closed(schema: object) -> object:
    """``schema`` with no additional members: they may come anywhere, each an arbitrary JSON
    text, and a uniform random walk would rarely finish one."""
    if isinstance(schema, dict):
        out = {k: _closed(v) for k, v in schema.items()}
        if "properties" in out:
            out.setdefault("additionalProperties", False)
        return out
    if isinstance(schema, list):
        return [_closed(v) for v in schema]
    return schema


@pytest.mark.parametrize("model", [Person, Tree])
def test_random_outputs_of_a_model_grammar_parse_back_with_model_validate_json(compiler: GrammarCompiler, model: type) -> None:
    compiled = compiler.compile_json_schema(_closed(pydantic_schema(model)), whitespace="compact")  # type: ignore[arg-type]
    rng = np.random.default_rng(7)
    finished = 0
    for _ in range(30):
        out, done = random_walk(Matcher(compiled), rng, max_steps=300, end_bias=0.3)
        if done:
            model.model_validate_json(out)  # raises on any invalid output
            finished += 1
    assert finished >= 5


def test_model_instances_dumped_by_pydantic_are_accepted(compiler: GrammarCompiler) -> None:
    compiled = compiler.compile_pydantic(Person)
    person = Person(name="Ada", age=36, height=1.7, address=Address(street="Main", zip_code="12345"), tags=["x"], born=datetime.date(1815, 12, 10))
    assert _accepts(compiled, person.model_dump_json())
    assert _accepts(compiled, person.model_dump_json(indent=2))
    assert not _accepts(compiled, person.model_dump_json().replace('"age":36', '"age":131'))
    assert not _accepts(compiled, person.model_dump_json().replace("12345", "1234"))


def test_plain_types_go_through_type_adapter(compiler: GrammarCompiler) -> None:
    compiled = compiler.compile_pydantic(list[Union[int, Literal["x"]]], whitespace="compact")
    assert _accepts(compiled, '[1,"x",-3]')
    assert not _accepts(compiled, '["y"]')


def test_a_type_pydantic_cannot_describe_raises_schema_error(compiler: GrammarCompiler) -> None:
    with pytest.raises(SchemaError):
        compiler.compile_pydantic(object())
