"""Verify: the host certificate chains to the CA, matches the host's key, names the host; no CA key on the host."""

testinfra_hosts = ["ansible://all"]


def test_key_is_private(host):
    key = host.file("/etc/hipgate/pki/host.key")
    assert key.exists and key.mode == 0o600 and key.user == "root"


def test_certificate_chains_to_the_ca(host):
    res = host.run("openssl verify -CAfile /etc/hipgate/pki/ca.crt /etc/hipgate/pki/host.crt")
    assert res.rc == 0, res.stderr


def test_certificate_names_the_host_and_matches_its_key(host):
    name = host.backend.get_hostname()
    text = host.check_output("openssl x509 -in /etc/hipgate/pki/host.crt -noout -subject -ext subjectAltName")
    assert f"CN = {name}" in text and f"DNS:{name}" in text
    with host.sudo():
        cert_pub = host.check_output("openssl x509 -in /etc/hipgate/pki/host.crt -noout -pubkey")
        key_pub = host.check_output("openssl pkey -in /etc/hipgate/pki/host.key -pubout")
    assert cert_pub == key_pub


def test_ca_key_never_on_the_host(host):
    with host.sudo():
        assert host.run("grep -rl 'PRIVATE KEY' /etc/hipgate/pki").stdout.split() == ["/etc/hipgate/pki/host.key"]
