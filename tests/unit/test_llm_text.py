from aimass.runtimes.llamacpp.text import TextStream, held_back


def test_held_back_counts_only_possible_stop_prefixes():
    assert held_back("hello wor", ["world"]) == 3
    assert held_back("hello", ["world"]) == 0
    assert held_back("ab", ["abc", "b"]) == 2
    assert held_back("", ["x"]) == 0


def test_stop_string_split_over_tokens_is_never_leaked():
    stream = TextStream(stops=["END"])
    out = [stream.push(p.encode()) for p in ["Hello E", "N", "D and more"]]
    assert out == ["Hello ", "", ""]
    assert stream.stopped
    assert stream.push(b"more") == ""


def test_false_alarm_prefix_is_released_later():
    stream = TextStream(stops=["END"])
    assert stream.push(b"an E") == "an "
    assert stream.push(b"N") == ""
    assert stream.push(b"x") == "ENx"
    assert stream.finish() == ""


def test_finish_flushes_held_text_when_no_stop_follows():
    stream = TextStream(stops=["stop"])
    assert stream.push(b"go st") == "go "
    assert stream.finish() == "st"


def test_utf8_character_split_across_tokens():
    stream = TextStream()
    data = "é😀".encode()
    pieces = [stream.push(data[i : i + 1]) for i in range(len(data))]
    assert "".join(pieces) == "é😀"
    assert pieces[0] == ""  # first byte of é alone is not a character yet


def test_earliest_of_several_stops_wins():
    stream = TextStream(stops=["b", "a"])
    assert stream.push(b"xxab") == "xx"
