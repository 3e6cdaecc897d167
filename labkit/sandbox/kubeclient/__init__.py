"""An async Kubernetes API client for the sandbox's own components (the kubelets): HTTPS, bearer token, watch.

:mod:`~labkit.sandbox.kubeclient.https` sends requests and turns failures into :class:`ApiError`;
:mod:`~labkit.sandbox.kubeclient.informer` lists, watches and re-lists after 410 Gone;
:mod:`~labkit.sandbox.kubeclient.events` records Events as client-go's recorder does.
"""
