# One short-lived process using MSAL Python (Debian's python3-msal) as an
# Entra client would, with only its configuration pointed at the agent:
# the authority on the agent's HTTPS endpoint (trusted through
# REQUESTS_CA_BUNDLE), validate_authority=False since it is not Entra's.
# It prints the token's SHA-256 (never the token) and exits.
import hashlib
import os
import sys

import msal

app = msal.ConfidentialClientApplication(
    os.environ["CLIENT_ID"], client_credential=os.environ["CLIENT_SECRET"],
    authority=os.environ["AUTHORITY"], validate_authority=False)
r = app.acquire_token_for_client(scopes=[os.environ["SCOPE"]])
if "access_token" not in r:
    sys.exit("MSAL Python could not get a token: %s %s" % (r.get("error"), r.get("error_description")))
print(hashlib.sha256(r["access_token"].encode()).hexdigest())
