"""Every mail host of the running local lab: `./dev lab host new NAME --mail` makes one.

    pyinfra inventory/lab.py deploy.py
"""

from mailhost.inventory import mail_host
from lab import Lab

_lab = Lab()
lab = []
for _host in _lab.hosts():
    _spec = _lab.spec_dir(_host.name) / "spec.yaml"
    if _spec.exists():
        _address, _data = _host.inventory()
        lab.append(mail_host(_address, _spec, **_data))
