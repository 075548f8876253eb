from mlsd_lib.environment import format_versions, package_versions, python_summary


def test_versions_drop_local_build_tags_and_report_missing_packages():
    versions = package_versions(("torch", "surely-not-an-installed-distribution"))
    assert versions["torch"] == "2.13.0"  # the CPU wheel reads 2.13.0+cpu
    assert versions["surely-not-an-installed-distribution"] == "not installed"


def test_format_aligns_columns():
    table = format_versions({"a": "1", "long-name": "2"}).splitlines()
    assert table == ["a          1", "long-name  2"]


def test_python_summary_names_the_minor_version_only():
    summary = python_summary()
    assert summary.startswith("CPython 3.11 on ")
