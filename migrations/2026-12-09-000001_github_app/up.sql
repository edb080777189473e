-- The GitHub App created through /setup (GitHub's manifest flow). Kept in
-- PostgreSQL because every serve/worker process shares only the database
-- (DESIGN.md: no sticky state), so all of them find the App without files
-- copied between hosts. The private key, the webhook secret and the client
-- secret are sealed with XChaCha20-Poly1305 under PRMONITOR_SECRET_KEY
-- (a 24-byte nonce followed by the ciphertext and tag), so a dump of the
-- database alone does not reveal them.
CREATE TABLE github_apps (
    app_id BIGINT PRIMARY KEY,
    slug TEXT NOT NULL,
    html_url TEXT NOT NULL,
    owner_login TEXT NOT NULL,
    client_id TEXT NOT NULL,
    private_key_sealed BYTEA NOT NULL,
    webhook_secret_sealed BYTEA NOT NULL,
    client_secret_sealed BYTEA NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- One App per installation of prmonitor: a second row is refused.
CREATE UNIQUE INDEX github_apps_only_one ON github_apps ((true));

-- The `state` of each setup begun (POST /setup), checked on GitHub's redirect
-- (GET /setup/complete): a code arriving with an unknown, used or expired
-- state is refused, so no other site can make this service store its App.
CREATE TABLE setup_states (
    state TEXT PRIMARY KEY,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    used_at TIMESTAMPTZ
);
