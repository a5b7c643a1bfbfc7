#!/bin/sh
# One PostgreSQL role per Rekey service, owning its own schema and nothing else.
#
# The postgres image runs this once, on the first start with an empty volume
# (/docker-entrypoint-initdb.d), as the superuser. Run it again by hand after adding a service
# or to reset the passwords from the files; it changes only what differs:
#   docker compose exec postgres sh /docker-entrypoint-initdb.d/10-rekey-roles.sh
#
# Each role (named like its service) may connect to the database and owns the schema of the
# same name, where the service's event store creates its tables; it is no superuser, cannot
# create databases or roles, and has no right on the other services' schemas or on `public`.
# Its password is read from $INIT_ROLES_SECRETS_DIR/postgres-<service>-password (a Compose secret).
#
# Settings: POSTGRES_USER, POSTGRES_DB (the image's), INIT_ROLES_SERVICES (the services, by
# default the four and audit), INIT_ROLES_SECRETS_DIR (/run/secrets), INIT_ROLES_PREFIX (empty; tests put
# their roles apart with it), and libpq's PGHOST/PGPORT when not run inside the image.
set -eu

secrets_dir="${INIT_ROLES_SECRETS_DIR:-/run/secrets}"
database="${POSTGRES_DB:-rekey}"
services="${INIT_ROLES_SERVICES:-ticketing credentials verification consent audit}"
prefix="${INIT_ROLES_PREFIX:-}"

psql -v ON_ERROR_STOP=1 --no-psqlrc --username "${POSTGRES_USER:-postgres}" --dbname "$database" \
     -v database="$database" <<'SQL'
-- Nobody creates objects in public or connects without being named.
REVOKE CREATE ON SCHEMA public FROM PUBLIC;
REVOKE ALL ON DATABASE :"database" FROM PUBLIC;
SQL

for service in $services; do
  role="$prefix$service"
  password_file="$secrets_dir/postgres-$service-password"
  if [ ! -r "$password_file" ]; then
    echo "init-roles: cannot read $password_file (the $service role's password)" >&2
    exit 1
  fi
  password="$(cat "$password_file")"
  psql -v ON_ERROR_STOP=1 --no-psqlrc --username "${POSTGRES_USER:-postgres}" --dbname "$database" \
       -v role="$role" -v schema="$service" -v password="$password" -v database="$database" <<'SQL'
SELECT format('CREATE ROLE %I', :'role')
 WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = :'role') \gexec
ALTER ROLE :"role" WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION PASSWORD :'password';
GRANT CONNECT ON DATABASE :"database" TO :"role";
CREATE SCHEMA IF NOT EXISTS :"schema" AUTHORIZATION :"role";
ALTER SCHEMA :"schema" OWNER TO :"role";
REVOKE ALL ON SCHEMA :"schema" FROM PUBLIC;
SQL
  echo "init-roles: role $role owns schema $service"
done
