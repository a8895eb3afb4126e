"""leanvibe_monitor.config: loading JSON/YAML, defaults, and one sentence per bad value."""

import json

import pytest
from monitor_test_helpers import API_KEY, COLLECTIONS_PATH, TOKEN

from leanvibe_monitor.config import ConfigError, load_config, parse_config

URL = "http://127.0.0.1:8000"


def minimal(**overrides):
    data = {"listen": "127.0.0.1:5000", "token": TOKEN, "collections_path": COLLECTIONS_PATH,
            "environments": [{"name": "local", "url": URL, "api_key": API_KEY}]}
    data.update(overrides)
    return data


def test_yaml_file_with_the_seed_values_and_defaults(tmp_path):
    path = tmp_path / "monitor.yml"
    path.write_text("""
listen: 0.0.0.0:5000
token: "%s"
collections_path: %s
environments:
  - name: staging
    url: https://staging.example.com/
    interval_s: 60
    mode: quick
    api_key: "%s"
  - name: production
    url: https://www.example.com
    interval_s: 30
    probes: [basic_health, database_health]
    headers: {X-Canary: never}
    timeout_s: 5
    success_threshold: 1
""" % (TOKEN, COLLECTIONS_PATH, API_KEY))
    config = load_config(path)
    assert (config.host, config.port, config.listen) == ("0.0.0.0", 5000, "0.0.0.0:5000")
    assert config.retention_days == 30
    assert config.database == "sqlite:///%s" % (tmp_path / "monitor.db")  # beside the config file
    assert config.environment_names == ["staging", "production"]
    staging, production = config.environments
    assert (staging.url, staging.interval_s, staging.mode, staging.probe_names) == (
        "https://staging.example.com", 60, "quick", ("basic_health", "api_functionality"))
    assert (staging.timeout_s, staging.success_threshold, staging.verify_tls) == (10, 0.85, True)
    assert (production.mode, production.probe_names, production.timeout_s) == (None, ("basic_health", "database_health"), 5)
    assert production.target.headers == {"X-Canary": "never"}
    assert production.target.timeout == 5
    assert config.environment("production") is production and config.environment("nope") is None
    assert TOKEN not in repr(config) and API_KEY not in repr(config)


def test_json_file(tmp_path):
    path = tmp_path / "monitor.json"
    path.write_text(json.dumps(minimal(database="sqlite:////var/lib/leanvibe/monitor.db", retention_days=7)))
    config = load_config(path)
    assert (config.database, config.retention_days) == ("sqlite:////var/lib/leanvibe/monitor.db", 7)
    assert config.source == str(path)


@pytest.mark.parametrize("database, expected", [
    ("sqlite:///data/monitor.db", "sqlite:///{base}/data/monitor.db"),
    ("sqlite:////srv/monitor.db", "sqlite:////srv/monitor.db"),
    ("/srv/other.db", "sqlite:////srv/other.db"),
    ("monitor.sqlite", "sqlite:///{base}/monitor.sqlite"),
    ("postgresql://leanvibe:pw@db.example.com:5432/monitor", "postgresql://leanvibe:pw@db.example.com:5432/monitor"),
])
def test_database_forms(tmp_path, database, expected):
    config = parse_config(minimal(database=database), base_dir=tmp_path)
    assert config.database == expected.format(base=tmp_path)


def test_database_description_never_shows_the_password(tmp_path):
    config = parse_config(minimal(database="postgresql://leanvibe:s3cret@db.example.com:5432/monitor"), base_dir=tmp_path)
    assert config.database_description == "PostgreSQL database postgresql://leanvibe@db.example.com:5432/monitor"
    assert "s3cret" not in repr(config.environments) and "s3cret" not in config.database_description


def test_ipv6_listen():
    config = parse_config(minimal(listen="[::1]:5001"))
    assert (config.host, config.port, config.listen) == ("::1", 5001, "[::1]:5001")


def test_probes_override_the_mode():
    config = parse_config(minimal(environments=[{"name": "a", "url": URL, "mode": "comprehensive", "probes": ["websocket"]}]))
    assert (config.environments[0].mode, config.environments[0].probe_names) == (None, ("websocket",))


def _env(**overrides):
    data = {"name": "local", "url": URL, "api_key": API_KEY}
    data.update(overrides)
    return [data]


BAD = [
    ([], "the config must be a mapping with listen, token and environments."),
    (minimal(listn="x"), "config key 'listn' is unknown: use listen, database, retention_days, token, collections_path, environments."),
    (minimal(listen=None), "listen must be host:port, for example 127.0.0.1:5000."),
    (minimal(listen="5000"), "listen '5000' must be host:port, for example 127.0.0.1:5000 or [::1]:5000."),
    (minimal(listen="localhost:0"), "listen 'localhost:0' has port 0: use 1 to 65535."),
    (minimal(listen="localhost:70000"), "listen 'localhost:70000' has port 70000: use 1 to 65535."),
    (minimal(database="mysql://db/x"), "database scheme 'mysql' is not supported: use sqlite:/// or postgresql://."),
    (minimal(database="sqlite:///:memory:"), "database 'sqlite:///:memory:' must name a SQLite file."),
    (minimal(database="sqlite://relative.db"), "database 'sqlite://relative.db' must be sqlite:///relative/path or sqlite:////absolute/path."),
    (minimal(database="postgresql://db:notaport/x"), "database URL PostgreSQL database postgresql://db/x has an invalid port."),
    (minimal(database=5), "database must be a sqlite:///PATH or postgresql:// URL."),
    (minimal(retention_days=0), "retention_days must be a whole number from 1 to 3650, not 0."),
    (minimal(retention_days="30"), "retention_days must be a whole number from 1 to 3650, not '30'."),
    (minimal(retention_days=3651), "retention_days must be a whole number from 1 to 3650, not 3651."),
    (minimal(token=None), "token must be a non-empty string: the POST endpoints need it."),
    (minimal(token="  "), "token must be a non-empty string: the POST endpoints need it."),
    (minimal(token="two words"), "token must not contain spaces or control characters."),
    (minimal(collections_path=""), "collections_path must be a folder path."),
    (minimal(environments=[]), "environments must be a non-empty list of {name, url} mappings."),
    (minimal(environments={"name": "x"}), "environments must be a non-empty list of {name, url} mappings."),
    (minimal(environments=["local"]), "environments[0] must be a mapping with name and url."),
    (minimal(environments=_env(intervall=5)), "environments[0] key 'intervall' is unknown: use name, url, interval_s, mode, probes, "
                                              "api_key, timeout_s, success_threshold, headers, verify_tls."),
    (minimal(environments=_env(name="-bad")), "environments[0].name must be 1 to 64 letters, digits, '_', '.' or '-' starting with "
                                              "a letter or digit, not '-bad'."),
    (minimal(environments=_env() + _env()), "environments[1].name 'local' is used twice."),
    (minimal(environments=_env(interval_s=4)), "environment local: interval_s must be a number from 5 to 3600, not 4."),
    (minimal(environments=_env(interval_s=3601)), "environment local: interval_s must be a number from 5 to 3600, not 3601."),
    (minimal(environments=_env(interval_s=True)), "environment local: interval_s must be a number from 5 to 3600, not True."),
    (minimal(environments=_env(timeout_s=0)), "environment local: timeout_s must be a number from 0.1 to 600, not 0."),
    (minimal(environments=_env(success_threshold=1.5)), "environment local: success_threshold must be a number from 0 to 1, not 1.5."),
    (minimal(environments=_env(verify_tls="yes")), "environment local: verify_tls must be true or false, not 'yes'."),
    (minimal(environments=_env(headers=["X-A"])), "environment local: headers must be a mapping of header name to text."),
    (minimal(environments=_env(headers={"Bad Name": "x"})), "environment local: header name 'Bad Name' is not valid."),
    (minimal(environments=_env(api_key=5)), "environment local: api_key must be a string."),
    (minimal(environments=_env(url="ftp://lb")), "environment local: url 'ftp://lb' must start with http:// or https://."),
    (minimal(environments=_env(url=None)), "environment local: url must be an http:// or https:// URL, for example http://127.0.0.1:8000."),
    (minimal(environments=_env(mode="fast")), "environment local: mode 'fast' is unknown: use quick, standard, critical-path-only, "
                                              "comprehensive."),
    (minimal(environments=_env(probes=["ping"])), "environment local: probe 'ping' is unknown: use basic_health, database_health, "
                                                  "api_functionality, websocket, performance, security_headers."),
    (minimal(environments=_env(api_key=None)), "environment local: probe api_functionality needs api_key: give one, or choose "
                                               "probes without it."),
]


@pytest.mark.parametrize("data, message", BAD, ids=[str(index) for index in range(len(BAD))])
def test_bad_values_are_one_sentence_each(data, message):
    with pytest.raises(ConfigError) as caught:
        parse_config(data)
    assert str(caught.value) == message
    assert "\n" not in str(caught.value)


def test_too_many_environments():
    environments = [{"name": "e%d" % index, "url": URL, "probes": ["basic_health"]} for index in range(101)]
    with pytest.raises(ConfigError, match=r"^environments lists 101 entries, at most 100 are allowed\.$"):
        parse_config(minimal(environments=environments))


@pytest.mark.parametrize("name, content, message", [
    ("missing.yml", None, "cannot read config file {path}: No such file or directory."),
    ("bad.yml", b"listen: [1, 2\ntoken: x\n", "config file {path} is not valid YAML at line 2: expected ',' or ']', but got ':'."),
    ("bad.json", b"{\"listen\": }", "config file {path} is not valid JSON: Expecting value: line 1 column 12 (char 11)."),
    ("latin1.yml", "token: caf\u00e9\n".encode("latin-1"), "config file {path} is not UTF-8 text."),
    ("huge.yml", b"#" * ((1 << 20) + 1), "config file {path} is over 1 MiB."),
    ("empty.yml", b"", "the config must be a mapping with listen, token and environments."),
])
def test_unreadable_files(tmp_path, name, content, message):
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert str(caught.value) == message.format(path=path)


def test_a_folder_as_config_file(tmp_path):
    with pytest.raises(ConfigError, match=r"^cannot read config file .*: Is a directory\.$"):
        load_config(tmp_path)
