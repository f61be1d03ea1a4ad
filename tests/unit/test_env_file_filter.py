"""Unit tests for the env_file_values filter (module_utils/_envfile.py): env files read as the sample app reads them."""

from __future__ import annotations

import pytest
from ansible.errors import AnsibleFilterError
from ansible_collections.upkeep.runbooks.plugins.filter.env_file import env_file_values


def test_values_are_verbatim_after_the_first_equals_sign():
    text = ("# settings\n"
            "   # an indented comment\n"
            "\n"
            "DB_USER=sampleapp\n"
            " DB_HOST = 127.0.0.1\n"
            "DB_PASSWORD=a=b#c $HOME 'q' \n"
            "no equals sign here\n")
    assert env_file_values(text) == {"DB_USER": "sampleapp", "DB_HOST": " 127.0.0.1",
                                     "DB_PASSWORD": "a=b#c $HOME 'q' "}


def test_several_files_a_later_one_wins():
    values = env_file_values(iter(["DB_USER=a\nDB_NAME=x\n", "DB_USER=b\r\nSECRET_KEY=k\n"]))
    assert values == {"DB_USER": "b", "DB_NAME": "x", "SECRET_KEY": "k"}


def test_something_else_than_text_is_refused_without_showing_it():
    with pytest.raises(AnsibleFilterError, match="item 2") as caught:
        env_file_values(["A=1\n", {"DB_PASSWORD": "hunter2"}])
    assert "hunter2" not in str(caught.value)
