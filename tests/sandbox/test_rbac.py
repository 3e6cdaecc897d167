"""RBAC as upstream: no escalation through roles or bindings, token lifetimes, impersonation, self reviews.

Each attack runs as a real ServiceAccount token through the real kubectl (or raw HTTPS for what kubectl
hides) against the session's sandbox. Wording is upstream's: pkg/registry/rbac/validation/rule.go
(ConfirmNoEscalation), pkg/apis/authentication/validation (ValidateTokenRequest) and
staging/src/k8s.io/apiserver/pkg/endpoints/filters/impersonation.go.
"""

from __future__ import annotations

import json

import pytest

RBAC = "/apis/rbac.authorization.k8s.io/v1"


def sa_groups(namespace: str) -> str:
    return f'["system:serviceaccounts" "system:serviceaccounts:{namespace}" "system:authenticated"]'


@pytest.fixture
def author(kubectl, namespace):
    """A ServiceAccount that may write roles and bindings and read pods in *namespace*; returns its token."""
    kubectl("create", "serviceaccount", "author", "-n", namespace)
    kubectl(
        "create",
        "role",
        "rbac-writer",
        "--verb=create,update,patch,get,list",
        "--resource=roles.rbac.authorization.k8s.io,rolebindings.rbac.authorization.k8s.io",
        "-n",
        namespace,
    )
    kubectl("create", "role", "pod-reader", "--verb=get,list,watch", "--resource=pods", "-n", namespace)
    for role in ("rbac-writer", "pod-reader"):
        kubectl("create", "rolebinding", f"author-{role}", f"--role={role}", f"--serviceaccount={namespace}:author",
                "-n", namespace)  # fmt: skip
    return kubectl("create", "token", "author", "-n", namespace).stdout.strip()


def role(name: str, *rules: dict) -> dict:
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "Role",
        "metadata": {"name": name},
        "rules": list(rules),
    }


def test_a_role_granting_more_than_its_writer_holds_is_refused_unless_it_may_escalate(
    kubectl, raw, namespace, author
) -> None:
    roles = f"{RBAC}/namespaces/{namespace}/roles"
    held = {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list"]}
    assert raw("POST", roles, role("modest", held), auth=author)[0] == 201  # what it holds, it may pass on

    greedy = {"apiGroups": [""], "resources": ["secrets", "pods"], "verbs": ["get", "delete"]}
    code, status = raw("POST", roles, role("greedy", greedy), auth=author)
    assert (code, status["reason"], status["details"]) == (
        403,
        "Forbidden",
        {"name": "greedy", "group": "rbac.authorization.k8s.io", "kind": "roles"},
    )
    assert status["message"] == (
        f'roles.rbac.authorization.k8s.io "greedy" is forbidden: user "system:serviceaccount:{namespace}:author" '
        f"(groups={sa_groups(namespace)}) is attempting to grant RBAC permissions not currently held:\n"
        '{APIGroups:[""], Resources:["pods"], Verbs:["delete"]}\n'
        '{APIGroups:[""], Resources:["secrets"], Verbs:["get" "delete"]}'
    )
    # the same through every other write: a patch, a replace, server-side apply
    patch = json.dumps({"rules": [held, greedy]}).encode()
    code, status = raw("PATCH", f"{roles}/modest", patch, auth=author, content_type="application/merge-patch+json")
    assert code == 403 and "is attempting to grant RBAC permissions not currently held" in status["message"]
    current = raw("GET", f"{roles}/modest")[1]
    assert raw("PUT", f"{roles}/modest", {**current, "rules": [greedy]}, auth=author)[0] == 403
    applied = kubectl("--token", author, "apply", "--server-side", "-n", namespace, "-f", "-", check=False,
                      input=json.dumps(role("applied", greedy)))  # fmt: skip
    assert applied.returncode != 0 and "is attempting to grant RBAC permissions not currently held" in applied.stderr
    assert raw("GET", f"{roles}/modest")[1]["rules"] == [held]  # nothing was written

    kubectl("create", "role", "escalator", "--verb=escalate", "--resource=roles.rbac.authorization.k8s.io",
            "-n", namespace)  # fmt: skip
    kubectl("create", "rolebinding", "author-escalator", "--role=escalator", f"--serviceaccount={namespace}:author",
            "-n", namespace)  # fmt: skip
    assert raw("POST", roles, role("greedy", greedy), auth=author)[0] == 201


def test_a_binding_to_a_role_with_more_than_its_writer_holds_is_refused_unless_it_may_bind(
    kubectl, raw, namespace, author
) -> None:
    bindings = f"{RBAC}/namespaces/{namespace}/rolebindings"

    def binding(name: str, kind: str, role_name: str) -> dict:
        return {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": {"name": name},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": kind, "name": role_name},
            "subjects": [{"kind": "ServiceAccount", "name": "author", "namespace": namespace}],
        }

    # binding itself to a role it already holds the rules of is allowed
    assert raw("POST", bindings, binding("again", "Role", "pod-reader"), auth=author)[0] == 201
    code, status = raw("POST", bindings, binding("take-admin", "ClusterRole", "admin"), auth=author)
    assert code == 403
    assert status["message"].startswith(
        f'rolebindings.rbac.authorization.k8s.io "take-admin" is forbidden: user '
        f'"system:serviceaccount:{namespace}:author" (groups={sa_groups(namespace)}) '
        "is attempting to grant RBAC permissions not currently held:\n"
    )
    assert '{APIGroups:["apps"], Resources:["*"], Verbs:["*"]}' in status["message"].splitlines()
    code, status = raw("POST", bindings, binding("ghost", "Role", "no-such-role"), auth=author)
    assert (code, status["message"]) == (404, 'roles.rbac.authorization.k8s.io "no-such-role" not found')
    # kubectl says the same
    refused = kubectl("--token", author, "create", "rolebinding", "via-kubectl", "--clusterrole=admin",
                      f"--serviceaccount={namespace}:author", "-n", namespace, check=False)  # fmt: skip
    assert "is attempting to grant RBAC permissions not currently held" in refused.stderr

    kubectl("create", "role", "binder", "--verb=bind", "--resource=clusterroles.rbac.authorization.k8s.io",
            "--resource-name=admin", "-n", namespace)  # fmt: skip
    kubectl("create", "rolebinding", "author-binder", "--role=binder", f"--serviceaccount={namespace}:author",
            "-n", namespace)  # fmt: skip
    assert raw("POST", bindings, binding("take-admin", "ClusterRole", "admin"), auth=author)[0] == 201
    # bind was granted on "admin" only
    assert raw("POST", bindings, binding("take-all", "ClusterRole", "cluster-admin"), auth=author)[0] == 403


def test_an_aggregation_rule_needs_cluster_admin(kubectl, raw, namespace) -> None:
    kubectl("create", "serviceaccount", "aggregator", "-n", namespace)
    kubectl("create", "clusterrole", f"{namespace}-crwriter", "--verb=create",
            "--resource=clusterroles.rbac.authorization.k8s.io")  # fmt: skip
    kubectl("create", "clusterrolebinding", f"{namespace}-crwriter", f"--clusterrole={namespace}-crwriter",
            f"--serviceaccount={namespace}:aggregator")  # fmt: skip
    token = kubectl("create", "token", "aggregator", "-n", namespace).stdout.strip()
    aggregated = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRole",
        "metadata": {"name": f"{namespace}-gatherer"},
        "aggregationRule": {"clusterRoleSelectors": [{"matchLabels": {"anything": "true"}}]},
        "rules": [],
    }
    try:
        code, status = raw("POST", f"{RBAC}/clusterroles", aggregated, auth=token)
        assert code == 403
        assert status["message"] == (
            f'clusterroles.rbac.authorization.k8s.io "{namespace}-gatherer" is forbidden: '
            "must have cluster-admin privileges to use the aggregationRule"
        )
    finally:
        kubectl("delete", "clusterrolebinding,clusterrole", f"{namespace}-crwriter", check=False)


def test_a_token_shorter_than_ten_minutes_is_refused_as_upstream(kubectl, raw, namespace) -> None:
    kubectl("create", "serviceaccount", "brief", "-n", namespace)
    short = kubectl("create", "token", "brief", "--duration=5m", "-n", namespace, check=False)
    assert short.returncode != 0
    assert (
        'TokenRequest.authentication.k8s.io "" is invalid: spec.expirationSeconds: Invalid value: 300: '
        "may not specify a duration less than 10 minutes" in short.stderr
    )
    path = f"/api/v1/namespaces/{namespace}/serviceaccounts/brief/token"
    code, status = raw("POST", path, {"spec": {"expirationSeconds": 1 << 33}})
    assert code == 422 and status["details"]["causes"] == [
        {
            "reason": "FieldValueInvalid",
            "message": f"Invalid value: {1 << 33}: may not specify a duration larger than 2^32 seconds",
            "field": "spec.expirationSeconds",
        }
    ]
    assert raw("POST", path, {"spec": {"expirationSeconds": "600"}})[0] == 400
    assert kubectl("create", "token", "brief", "--duration=10m", "-n", namespace).stdout.count(".") == 2


def test_can_i_as_a_service_account_answers_for_that_account(kubectl, namespace) -> None:
    kubectl("create", "serviceaccount", "watcher", "-n", namespace)
    as_sa = f"--as=system:serviceaccount:{namespace}:watcher"
    assert kubectl("auth", "can-i", "list", "services", "-n", namespace, as_sa, check=False).stdout.strip() == "no"
    kubectl("create", "role", "svc-reader", "--verb=list", "--resource=services", "-n", namespace)
    kubectl("create", "rolebinding", "svc-reader", "--role=svc-reader", f"--serviceaccount={namespace}:watcher",
            "-n", namespace)  # fmt: skip
    assert kubectl("auth", "can-i", "list", "services", "-n", namespace, as_sa).stdout.strip() == "yes"
    assert kubectl("auth", "can-i", "list", "pods", "-n", namespace, as_sa, check=False).stdout.strip() == "no"
    # the request itself runs as the account, not as the admin who asked
    denied = kubectl("get", "pods", "-n", namespace, as_sa, check=False)
    assert (
        f'pods is forbidden: User "system:serviceaccount:{namespace}:watcher" cannot list resource "pods" '
        f'in API group "" in the namespace "{namespace}"' in denied.stderr
    )
    whoami = json.loads(kubectl("auth", "whoami", as_sa, "--as-uid=1234", "-o", "json").stdout)
    assert whoami["status"]["userInfo"] == {
        "username": f"system:serviceaccount:{namespace}:watcher",
        "uid": "1234",
        "groups": ["system:serviceaccounts", f"system:serviceaccounts:{namespace}", "system:authenticated"],
    }
    listed = kubectl("auth", "can-i", "--list", "-n", namespace, as_sa).stdout.splitlines()
    assert listed[0].split() == ["Resources", "Non-Resource", "URLs", "Resource", "Names", "Verbs"]
    assert any(line.split() == ["services", "[]", "[]", "[list]"] for line in listed), listed
    assert not any(line.startswith("*.*") for line in listed)


def test_impersonation_needs_the_impersonate_verb_and_says_so_as_upstream(kubectl, raw, namespace, author) -> None:
    as_user = kubectl("--token", author, "get", "pods", "-n", namespace, "--as=jane", check=False)
    assert (
        'users "jane" is forbidden: User "system:serviceaccount:'
        f'{namespace}:author" cannot impersonate resource "users" in API group "" at the cluster scope'
        in as_user.stderr
    )
    kubectl("create", "clusterrole", f"{namespace}-imp", "--verb=impersonate", "--resource=users",
            "--resource-name=jane")  # fmt: skip
    kubectl("create", "rolebinding", "author-imp", f"--clusterrole={namespace}-imp",
            f"--serviceaccount={namespace}:author", "-n", namespace)  # fmt: skip
    kubectl("create", "clusterrolebinding", f"{namespace}-imp", f"--clusterrole={namespace}-imp",
            f"--serviceaccount={namespace}:author")  # fmt: skip
    try:
        pods = f"/api/v1/namespaces/{namespace}/pods"
        jane = raw("GET", pods, auth=author, headers={"Impersonate-User": "jane"})
        assert jane[0] == 403 and jane[1]["message"].startswith('pods is forbidden: User "jane" cannot list')
        whoami = kubectl("--token", author, "auth", "whoami", "--as=jane", "-o", "json")
        assert json.loads(whoami.stdout)["status"]["userInfo"] == {
            "username": "jane",
            "groups": ["system:authenticated"],
        }
        # jane only: not another user, not a group (system:masters would be everything), not a uid
        for flags, message in (
            (["--as=joe"], 'users "joe" is forbidden'),
            (["--as=jane", "--as-group=system:masters"], 'groups "system:masters" is forbidden'),
            (["--as=jane", "--as-uid=42"], 'uids.authentication.k8s.io "42" is forbidden: User '),
            ([f"--as=system:serviceaccount:{namespace}:default"], 'serviceaccounts "default" is forbidden: User '),
        ):
            refused = kubectl("--token", author, "get", "pods", "-n", namespace, *flags, check=False)
            assert message in refused.stderr, (flags, refused.stderr)
        as_default = f"--as=system:serviceaccount:{namespace}:default"
        sa = kubectl("--token", author, "get", "pods", "-n", namespace, as_default, check=False)
        assert (
            f'cannot impersonate resource "serviceaccounts" in API group "" in the namespace "{namespace}"' in sa.stderr
        )
        code, status = raw("GET", pods, auth=author, headers={"Impersonate-Group": "system:masters"})
        assert (code, status["reason"], status["message"]) == (
            400,
            "BadRequest",
            "requested [{Group  system:masters    }] without impersonating a user",
        )
    finally:
        kubectl("delete", "clusterrolebinding,clusterrole", f"{namespace}-imp", check=False)


def test_whoami_and_can_i_list_for_the_admin_and_discovery_lists_the_reviews(kubectl, namespace) -> None:
    whoami = kubectl("auth", "whoami").stdout.split()
    assert whoami[:4] == ["ATTRIBUTE", "VALUE", "Username", "system:admin"]
    assert "[system:masters" in whoami and "system:authenticated]" in whoami
    listed = kubectl("auth", "can-i", "--list", "-n", namespace).stdout.splitlines()
    assert any(line.split() == ["*.*", "[]", "[]", "[*]"] for line in listed), listed
    assert any(line.split() == ["[*]", "[]", "[*]"] for line in listed), listed
    assert any(line.split()[:1] == ["selfsubjectreviews.authentication.k8s.io"] for line in listed), listed
    resources = kubectl("api-resources", "--api-group=authentication.k8s.io", "-o", "name").stdout.split()
    assert resources == ["selfsubjectreviews.authentication.k8s.io", "tokenreviews.authentication.k8s.io"]
    reviews = kubectl("api-resources", "--api-group=authorization.k8s.io", "-o", "name").stdout.split()
    assert "selfsubjectrulesreviews.authorization.k8s.io" in reviews


def test_a_refused_subresource_is_named_with_its_subresource_as_upstream(raw, namespace, author) -> None:
    code, status = raw("GET", f"/api/v1/namespaces/{namespace}/pods/anything/log", auth=author)
    assert (code, status["details"]) == (403, {"name": "anything", "kind": "pods"})
    assert status["message"] == (
        f'pods "anything" is forbidden: User "system:serviceaccount:{namespace}:author" cannot get resource '
        f'"pods/log" in API group "" in the namespace "{namespace}"'
    )
