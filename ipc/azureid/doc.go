// Package azureid is the agent's Azure managed-identity endpoint, for the
// Azure SDKs (@azure/identity, azure-identity, MSAL's managed identity)
// unmodified: the App Service protocol (IDENTITY_ENDPOINT with the
// X-IDENTITY-HEADER secret, API 2019-08-01) and the IMDS protocol
// (/metadata/identity/oauth2/token with Metadata: true, reached through
// AZURE_POD_IDENTITY_AUTHORITY_HOST) on one loopback listener. A request
// names a resource; the engine picks the caller's profile for it
// (agent.Agent.MatchResource). The caller is identified by the kernel, as
// on the token endpoint; the header secret only says that the caller was
// told the agent's environment, never who it is.
package azureid
