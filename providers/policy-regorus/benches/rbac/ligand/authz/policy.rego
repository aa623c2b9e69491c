# Role-based access control for the bank services: workload and user roles from data.rbac,
# per-route permissions, and checks over the whole identity chain.
package ligand.authz

import rego.v1

default allow := false

# === the caller ===

peer := input.peer.workload

peer_trust_domain := split(peer, "/")[2]

origin := input.chain[0]

chain_depth := count(input.chain)

users contains link.user if {
	some link in input.chain
	link.user
}

external_parties contains link.external_party if {
	some link in input.chain
	link.external_party
}

gateway_in_chain if {
	some link in input.chain
	link.workload in data.rbac.gateways
}

# === roles ===

workload_roles contains role if {
	some role in data.rbac.workloads[peer]
}

workload_roles contains "gateway" if {
	peer in data.rbac.gateways
}

user_roles contains role if {
	some user in users
	some role in data.rbac.users[user]
}

inherited_roles contains parent if {
	some role in workload_roles | user_roles
	some parent in data.rbac.inherits[role]
}

roles := (workload_roles | user_roles) | inherited_roles

permissions contains permission if {
	some role in roles
	some permission in data.rbac.roles[role].permissions
}

# === the route ===

route := data.rbac.routes[input.resource.value]

required_permission := route[input.action.name]

public_route if route.public == true

sensitive_route if route.sensitive == true

requires_user if route.requires_user == true

# === checks ===

trusted_domain if peer_trust_domain in data.rbac.trusted_domains

chain_within_limit if chain_depth <= data.rbac.max_chain_depth

user_present if count(users) > 0

user_check_passes if not requires_user

user_check_passes if {
	requires_user
	user_present
}

sensitive_check_passes if not sensitive_route

sensitive_check_passes if {
	sensitive_route
	"auditor" in roles
}

sensitive_check_passes if {
	sensitive_route
	"admin" in roles
}

external_check_passes if count(external_parties) == 0

external_check_passes if {
	count(external_parties) > 0
	gateway_in_chain
}

service_accepts_peer if not data.rbac.service_callers[input.service]

service_accepts_peer if peer in data.rbac.service_callers[input.service]

# === denials ===

blocked_workload if peer in data.rbac.blocked_workloads

blocked_user if {
	some user in users
	user in data.rbac.blocked_users
}

method_mismatch if {
	route.methods
	not input.request.method in route.methods
}

denied if blocked_workload

denied if blocked_user

denied if method_mismatch

denied if not chain_within_limit

denied if not trusted_domain

# === the decision ===

allow if {
	public_route
	not denied
}

allow if {
	not denied
	service_accepts_peer
	required_permission in permissions
	user_check_passes
	sensitive_check_passes
	external_check_passes
}

allow if {
	not denied
	"admin" in roles
	not sensitive_route
}

# === the reason, for the audit log ===

reason := "workload is blocked" if blocked_workload

else := "user is blocked" if blocked_user

else := "method does not match the route" if method_mismatch

else := "chain is too long" if not chain_within_limit

else := sprintf("trust domain %s is not trusted", [peer_trust_domain]) if not trusted_domain

else := "route has no permission for this action" if not required_permission

else := sprintf("missing permission %s", [required_permission]) if not required_permission in permissions

else := "route requires a user in the chain" if not user_check_passes

else := "sensitive route requires the auditor role" if not sensitive_check_passes

else := "external party not behind a gateway" if not external_check_passes

else := "caller not accepted by this service" if not service_accepts_peer

else := "allowed" if allow
