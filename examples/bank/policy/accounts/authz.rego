# accounts: balances move only on the path gateway → transfers → accounts, for a customer's
# transaction (the Transaction Token the gateway minted), a debit only from the customer's own
# account, never for a frozen account; reads come from the gateway or from transfers.
package ligand.authz

import rego.v1

default allow := false

gateway := "spiffe://bank.example/service/gateway"

transfers := "spiffe://bank.example/service/transfers"

# The workloads the request went through, oldest first (the immediate peer last).
hops := [link.workload | some link in input.chain]

# Every hop's link verified: the peer by mTLS, the ones before it by their signed chain tokens.
all_verified if {
	every link in input.chain {
		link.verified
	}
}

money_path if {
	hops == [gateway, transfers]
	all_verified
	input.peer.workload == transfers
}

# The customer whose transaction this is: the verified Transaction Token's subject.
customer := input.txn.sub

own_account if {
	input.action.name == "credit"
}

own_account if {
	input.action.name == "debit"
	input.request.path == sprintf("/accounts/%s/debit", [customer])
}

frozen if {
	some id in data.bank.frozen
	input.request.path == sprintf("/accounts/%s/debit", [id])
}

allow if {
	input.action.name in {"debit", "credit"}
	money_path
	own_account
	not frozen
}

allow if {
	input.action.name == "GET"
	input.resource.value == "/accounts/{id}"
	input.peer.workload in {gateway, transfers}
}

reason := "the account is frozen by compliance" if {
	frozen
} else := "balances move only on the path gateway → transfers → accounts" if {
	input.action.name in {"debit", "credit"}
	not money_path
} else := "a debit only from the account of the transaction's customer" if {
	input.action.name in {"debit", "credit"}
	not own_account
}
