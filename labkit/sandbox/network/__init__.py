"""The sandbox's network process: kube-proxy's Service forwarding and CoreDNS's cluster DNS in one API client.

``python -m labkit.sandbox.network`` (started by the daemon, :mod:`labkit.sandbox.netprocess`) watches
Services, EndpointSlices and Namespaces over HTTPS with its own ServiceAccount token, like a kubelet, and
serves :mod:`~labkit.sandbox.network.proxy` (every ``clusterIP:port``) and :mod:`~labkit.sandbox.network.dns`
(``127.43.0.10:53``), both over the address plan of :mod:`labkit.sandbox.netmap`. It imports no part of
the API server, the controllers, the daemon or the kubelet.
"""
