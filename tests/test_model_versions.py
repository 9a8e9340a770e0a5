"""Version names are ASCII digits only, wherever they are read."""
from components.model_versions import version_number
from components.pusher.executor import next_version


def test_ascii_digits_only():
    assert version_number('1718000000') == 1718000000
    assert version_number('007') == 7
    for name in ('²', '1²', '٣', '１２', '', '-1', '+1', '1.0', ' 1', '1 ', '.tmp-12-3', '12\n'):
        assert version_number(name) is None, name


def test_pusher_ignores_non_ascii_digit_directories(tmp_path):
    (tmp_path / '5000000000').mkdir()
    (tmp_path / '²').mkdir()        # str.isdigit() is True, int() fails
    (tmp_path / '٩٩٩٩٩٩٩٩٩٩٩').mkdir()  # str.isdigit() is True, int() reads 99999999999
    assert next_version(str(tmp_path)) == 5000000001
