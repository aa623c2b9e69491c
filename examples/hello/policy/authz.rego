package ligand.authz

import rego.v1

default allow := false

# Any caller the mTLS layer admitted (an SVID of the trust domain) may be greeted.
allow if {
	input.request.method == "GET"
	startswith(input.request.path, "/hello/")
}
