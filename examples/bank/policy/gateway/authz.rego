# gateway: the bank's customers use its routes, each authenticated by an access token of the
# bank's identity provider; the gateway sees them as a `user` link named by the token's `sub`
# (no workload calls the gateway: it has no mTLS listener).
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
	input.peer.verified
	is_string(input.peer.user)
	input.peer.user != ""
	input.txn.sub == input.peer.user
	[input.action.name, input.resource.value] in routes
}
