"""Every host of the running local lab (`mailhost lab up`, `mailhost lab host new NAME`).

    pyinfra inventory/lab.py deploy.py
"""

from mailhost.lab import Lab

lab = []
for _host in Lab().hosts():
    _address, _data = _host.inventory()
    lab.append((_address, {**_data, "mail_hostname": f"{_host.name}.lab.test"}))
