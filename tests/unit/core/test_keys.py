"""Key columns: the mapping from join keys to a user's own column names, checked and applied at the boundary."""

from __future__ import annotations

import pyarrow as pa
import pytest

from bottega.core.keys import check_key_columns, parse_key_columns, rename_from_keys, rename_to_keys


def test_a_mapping_names_join_keys_and_distinct_columns() -> None:
    check_key_columns({"user_id": "userId"}, ["user_id", "item_id"], "key_columns")
    with pytest.raises(ValueError, match=r"'userid' is not a join key \(the join keys: user_id, item_id\)"):
        check_key_columns({"userid": "userId"}, ["user_id", "item_id"], "key_columns")
    with pytest.raises(ValueError, match="two join keys are read from the column 'id'"):
        check_key_columns({"user_id": "id", "item_id": "id"}, ["user_id", "item_id"], "key_columns")
    with pytest.raises(ValueError, match="the name of another join key"):
        check_key_columns({"user_id": "item_id"}, ["user_id", "item_id"], "key_columns")
    with pytest.raises(ValueError, match="not a column name"):
        check_key_columns({"user_id": "a\nb"}, ["user_id"], "key_columns")


def test_tables_are_renamed_in_and_back_and_mistakes_name_the_column() -> None:
    table = pa.table({"userId": [1, 2], "User Name": ["a", "b"], "score": [0.5, 0.7]})
    mapping = {"user_id": "userId"}
    inside = rename_to_keys(table, mapping, "the label table")
    assert inside.column_names == ["user_id", "User Name", "score"]
    assert rename_from_keys(inside, mapping).column_names == table.column_names
    assert rename_to_keys(table, None, "x") is table
    with pytest.raises(ValueError, match=r"the label table has no column 'uid' .*its columns: userId, User Name"):
        rename_to_keys(table, {"user_id": "uid"}, "the label table")
    both = table.append_column("user_id", pa.array([1, 2]))
    with pytest.raises(ValueError, match="has both 'user_id' and 'userId'"):
        rename_to_keys(both, mapping, "the label table")


def test_cli_pairs() -> None:
    assert parse_key_columns(["user_id=userId", "item_id=Item ID"]) == {"user_id": "userId", "item_id": "Item ID"}
    with pytest.raises(ValueError, match="expected JOIN_KEY=COLUMN"):
        parse_key_columns(["user_id"])
    with pytest.raises(ValueError, match="given twice"):
        parse_key_columns(["a=b", "a=c"])
