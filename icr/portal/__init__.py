"""The provider portal: where a provider firm's users read their inactive case reviews and
answer them, signed in (OpenID Connect; a pick list in the demo only).

- `app`: the aiohttp application, sessions and security headers;
- `api`: the JSON API shaped like the LAA's notifications API (`schema`, `openapi`);
- `pages`: the GOV.UK Design System pages (`templates/`, GOV.UK Frontend vendored in `static/`);
- `auth`: OpenID Connect sign-in and bearer tokens, and the demo's sign-in; `sessions`: signed
  cookies and CSRF tokens; `views`: a notification as the user sees it, by the engine's rules;
- `server`: `python -m icr.portal`, and what `./run demo` serves.
"""
