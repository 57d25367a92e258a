"""A test PKI with real TSA, OCSP and CRL responders (certomancer) served on loopback."""

import socket
import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from asn1crypto import x509 as asn1_x509
from certomancer.integrations.animator import Animator, AnimatorArchStore
from certomancer.registry import ArchLabel, CertLabel, CertomancerConfig, KeyLabel
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from werkzeug.serving import BaseWSGIServer, make_server

ARCH = "signvault-test"
KEYS = ("root", "interm", "ocsp", "tsa", "alice", "bob", "revoked")
_FOREVER = {
    "valid-from": "2020-01-01T00:00:00+0000",
    "valid-to": "2100-01-01T00:00:00+0000",
}


def _key_usage(*usages: str) -> dict[str, Any]:
    return {
        "id": "key_usage",
        "critical": True,
        "smart-value": {"schema": "key-usage", "params": list(usages)},
    }


def _signer(issuer: str, **extra: Any) -> dict[str, Any]:
    return {
        "issuer": issuer,
        "validity": {
            "valid-from": "2024-01-01T00:00:00+0000",
            "valid-to": "2090-01-01T00:00:00+0000",
        },
        "extensions": [
            _key_usage("digital_signature", "non_repudiation"),
            {
                "id": "crl_distribution_points",
                "smart-value": {
                    "schema": "crl-dist-url",
                    "params": {"crl-repo-names": [issuer]},
                },
            },
            {
                "id": "authority_information_access",
                "smart-value": {
                    "schema": "aia-urls",
                    "params": {"ocsp-responder-names": [issuer]},
                },
            },
        ],
        **extra,
    }


def _config(url: str) -> dict[str, Any]:
    ca_extensions = [
        {"id": "basic_constraints", "critical": True, "value": {"ca": True}},
        _key_usage("digital_signature", "key_cert_sign", "crl_sign"),
    ]
    return {
        "external-url-prefix": url,
        "keysets": {
            ARCH: {
                "path-prefix": "keys",
                "keys": {k: {"path": f"{k}.key.pem"} for k in KEYS},
            }
        },
        "pki-architectures": {
            ARCH: {
                "keyset": ARCH,
                "entity-defaults": {
                    "country-name": "BE",
                    "organization-name": "SignVault Test PKI",
                },
                "entities": {
                    "root": {"common-name": "SignVault Test Root"},
                    "interm": {"common-name": "SignVault Test Issuing CA"},
                    "ocsp": {"common-name": "SignVault Test OCSP"},
                    "tsa": {"common-name": "SignVault Test TSA"},
                    "alice": {"common-name": "Alice Signer"},
                    "bob": {"common-name": "Bob Signer"},
                    "revoked": {"common-name": "Revoked Signer"},
                },
                "certs": {
                    "root": {
                        "subject": "root",
                        "subject-key": "root",
                        "issuer": "root",
                        "authority-key": "root",
                        "validity": _FOREVER,
                        "extensions": ca_extensions,
                    },
                    "interm": {
                        "issuer": "root",
                        "validity": _FOREVER,
                        "extensions": [
                            *ca_extensions,
                            {
                                "id": "crl_distribution_points",
                                "smart-value": {
                                    "schema": "crl-dist-url",
                                    "params": {"crl-repo-names": ["root"]},
                                },
                            },
                        ],
                    },
                    "ocsp": {
                        "issuer": "interm",
                        "validity": _FOREVER,
                        "extensions": [
                            _key_usage("digital_signature"),
                            {
                                "id": "extended_key_usage",
                                "critical": True,
                                "value": ["ocsp_signing"],
                            },
                            {"id": "ocsp_no_check"},
                        ],
                    },
                    "tsa": {
                        "issuer": "root",
                        "validity": _FOREVER,
                        "extensions": [
                            _key_usage("digital_signature"),
                            {
                                "id": "extended_key_usage",
                                "critical": True,
                                "value": ["time_stamping"],
                            },
                        ],
                    },
                    "alice": _signer("interm"),
                    "bob": _signer("interm"),
                    "revoked": _signer(
                        "interm",
                        revocation={
                            "revoked-since": "2024-06-01T00:00:00+0000",
                            "reason": "key_compromise",
                        },
                    ),
                },
                "services": {
                    "ocsp": {
                        "interm": {
                            "for-issuer": "interm",
                            "responder-cert": "ocsp",
                            "signing-key": "ocsp",
                        }
                    },
                    "crl-repo": {
                        "root": {
                            "for-issuer": "root",
                            "signing-key": "root",
                            "simulated-update-schedule": "P90D",
                        },
                        "interm": {
                            "for-issuer": "interm",
                            "signing-key": "interm",
                            "simulated-update-schedule": "P30D",
                        },
                    },
                    "time-stamping": {
                        "tsa": {"signing-key": "tsa", "signing-cert": "tsa"}
                    },
                },
            }
        },
    }


class RequestCounter:
    """WSGI middleware counting the requests each responder path receives."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.counts: Counter[str] = Counter()
        self._lock = threading.Lock()

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        with self._lock:
            self.counts[environ["PATH_INFO"]] += 1
        return self.app(environ, start_response)


@dataclass
class TestPki:
    """An issued test PKI; `serve()` runs its responders in this process."""

    __test__ = False

    url: str
    root: asn1_x509.Certificate
    interm: asn1_x509.Certificate
    _config: CertomancerConfig
    _arch: Any
    _server: BaseWSGIServer | None = None
    _requests: RequestCounter | None = None

    def requests_to(self, kind: str) -> int:
        """Requests so far to the OCSP responder (`ocsp`), the CRLs (`crls`) or the TSA (`tsa`)."""
        assert self._requests is not None, "served by another process"
        prefix = f"/{ARCH}/{kind}/"
        return sum(
            n for path, n in self._requests.counts.items() if path.startswith(prefix)
        )

    @property
    def tsa_url(self) -> str:
        return f"{self.url}/{ARCH}/tsa/tsa"

    @property
    def root_pem(self) -> bytes:
        return asn1_pem(self.root)

    def cert(self, label: str) -> asn1_x509.Certificate:
        return parsed(self._arch.get_cert(CertLabel(label)))

    def private_key(self, label: str) -> rsa.RSAPrivateKey:
        info = self._arch.key_set.get_private_key(KeyLabel(label))
        key = serialization.load_der_private_key(info.dump(), password=None)
        assert isinstance(key, rsa.RSAPrivateKey)
        return key

    def pkcs12(self, label: str, password: bytes) -> bytes:
        data: bytes = self._arch.package_pkcs12(
            CertLabel(label),
            certs_to_embed=[CertLabel("interm"), CertLabel("root")],
            password=password,
        )
        return data

    def serve(self) -> None:
        """Serve the TSA, OCSP and CRL responders on 127.0.0.1 from a thread of this process."""
        animator = Animator(
            AnimatorArchStore(self._config.pki_archs), with_web_ui=False
        )
        self._requests = RequestCounter(animator)
        port = int(self.url.rsplit(":", 1)[1])
        self._server = make_server("127.0.0.1", port, self._requests, threaded=True)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()


def parsed(cert: asn1_x509.Certificate) -> asn1_x509.Certificate:
    """The certificate loaded from its DER: certomancer builds its certificates from
    Python values, and asn1crypto re-serialises those on every dump (slow)."""
    return asn1_x509.Certificate.load(cert.dump())


def asn1_pem(cert: asn1_x509.Certificate) -> bytes:
    from asn1crypto import pem

    data: bytes = pem.armor("CERTIFICATE", cert.dump())
    return data


def issue_pki(workdir: Path) -> TestPki:
    """Generate keys and the PKI's configuration (for a free loopback port) in `workdir`."""
    keys = workdir / "keys"
    keys.mkdir(parents=True, exist_ok=True)
    for label in KEYS:
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        (keys / f"{label}.key.pem").write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    (workdir / "certomancer.yml").write_text(
        yaml.safe_dump(_config(f"http://127.0.0.1:{port}"))
    )
    return open_pki(workdir)


def open_pki(workdir: Path) -> TestPki:
    """The PKI `issue_pki` wrote in `workdir` (to serve it, or to use it while another process does)."""
    path = workdir / "certomancer.yml"
    config = CertomancerConfig.from_file(str(path), key_search_dir=str(workdir))
    arch = config.get_pki_arch(ArchLabel(ARCH))
    return TestPki(
        url=yaml.safe_load(path.read_text())["external-url-prefix"],
        root=parsed(arch.get_cert(CertLabel("root"))),
        interm=parsed(arch.get_cert(CertLabel("interm"))),
        _config=config,
        _arch=arch,
    )


@contextmanager
def running_pki(workdir: Path) -> Iterator[TestPki]:
    """Generate keys, issue the PKI and serve its TSA/OCSP/CRL responders on 127.0.0.1."""
    pki = issue_pki(workdir)
    pki.serve()
    try:
        yield pki
    finally:
        pki.stop()
