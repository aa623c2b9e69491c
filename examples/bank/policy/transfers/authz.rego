# transfers: only the gateway creates transfers.
package ligand.authz

import rego.v1

default allow := false

allow if {
	input.action.name == "create"
	input.resource.value == "/transfers"
	input.peer.workload == "spiffe://bank.example/service/gateway"
}
