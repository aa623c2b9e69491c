# gateway: the bank's people (SPIFFE IDs under spiffe://bank.example/user/) use its routes; no
# workload calls the gateway.
package ligand.authz

import rego.v1

default allow := false

routes := {
	["transfer", "/v1/transfers"],
	["debit", "/v1/shortcut/{id}/debit"],
	["GET", "/v1/accounts/{id}"],
	["GET", "/v1/rates"],
}

allow if {
	startswith(input.peer.workload, "spiffe://bank.example/user/")
	[input.action.name, input.resource.value] in routes
}
