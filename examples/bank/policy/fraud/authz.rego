# fraud: scores are asked for by transfers only, on a request that came through the gateway.
package ligand.authz

import rego.v1

default allow := false

allow if {
	input.action.name == "score"
	input.peer.workload == "spiffe://bank.example/service/transfers"
	[link.workload | some link in input.chain] == [
		"spiffe://bank.example/service/gateway",
		"spiffe://bank.example/service/transfers",
	]
}
