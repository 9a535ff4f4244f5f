package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/phantom-perimeter/phantom/internal/datadir"
	"github.com/phantom-perimeter/phantom/internal/keys"
	"github.com/phantom-perimeter/phantom/internal/store"
)

func newStoreCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "store",
		Short: "The shared PostgreSQL store: per-component roles",
	}
	cmd.AddCommand(newStoreRolesCmd())
	return cmd
}

func newStoreRolesCmd() *cobra.Command {
	var dataDir, storeURL, prefix string
	var components []string
	var create bool
	cmd := &cobra.Command{
		Use:   "roles [--component C]... [--prefix phantom_] [--create]",
		Short: "Grant each component kind a PostgreSQL role with only the privileges its job needs",
		Long: fmt.Sprintf(`Make the store role of each component kind (--component, repeatable; default every one
of %v): a role named PREFIX<component> is granted, in the store's schema, only what that
kind of process needs, and nothing it held there before. Every role reads the trust (CA
certificates, certificate, session and node revocations) and appends audit anchors; the
gateway reads users' keys and token keys; STS also reads the issuing CA's sealed key and
spends join tokens; the detector writes findings, risk levels and session revocations and
disables keys; the endpoint and the egress proxy write nothing else. No role but the
owner's deletes keys, revocations, certificates or findings. docs/threat-model.md lists
each role's grants and what they refuse.

With --create a missing role is created (LOGIN, no password: set one with ALTER ROLE …
PASSWORD, or authenticate it by certificate); the store's login then needs CREATEROLE.
Run it with the store's own login (--store), which owns the tables, and the master key;
run it again after an upgrade that adds tables. A component then logs in with its role
(--store postgres://phantom_gateway:…@…) and its key file (--keys).`, store.RoleComponents()),
		Example: `  phantom store roles --store "$PHANTOM_STORE" --create
  psql -c "ALTER ROLE phantom_gateway PASSWORD '…'"
  phantom gateway --store 'postgres://phantom_gateway:…@db.internal/phantom?sslmode=verify-full' --keys gateway.keys …`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runStoreRoles(cmd.Context(), cmd.OutOrStdout(), datadir.Dir(dataDir, os.Getenv), storeURL, prefix, components, create)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&storeURL, "store", os.Getenv("PHANTOM_STORE"), "the PostgreSQL store, with its owner's login (default $PHANTOM_STORE)")
	fl.StringVar(&dataDir, "data-dir", "", "data directory holding master.key, unless $PHANTOM_MASTER_KEY is set (default $PHANTOM_DATA_DIR or ./phantom-data)")
	fl.StringVar(&prefix, "prefix", "phantom_", "role names are this prefix and the component's name")
	fl.StringArrayVar(&components, "component", nil, "a component kind to grant (repeatable; default every one)")
	fl.BoolVar(&create, "create", false, "create missing roles (needs CREATEROLE)")
	auditUsageErrors(cmd)
	return cmd
}

func runStoreRoles(ctx context.Context, stdout io.Writer, dataDir, storeURL, prefix string, names []string, create bool) error {
	if !store.IsPostgresURL(storeURL) {
		return &exitError{code: exitUsage, err: fmt.Errorf("--store: want the postgres:// URL of the store (roles are PostgreSQL's; a SQLite store is one host's file)")}
	}
	cs := store.RoleComponents()
	if len(names) > 0 {
		cs = nil
		for _, n := range names {
			c, err := keys.ParseComponent(n)
			if err != nil || c == keys.Operator {
				return &exitError{code: exitUsage, err: fmt.Errorf("--component %q: want one of %v", n, store.RoleComponents())}
			}
			cs = append(cs, c)
		}
	}
	st, err := openAuditStore(ctx, dataDir, storeURL)
	if err != nil {
		return err
	}
	defer st.Close()
	pg, ok := st.(*store.Postgres)
	if !ok {
		return &exitError{code: exitUsage, err: fmt.Errorf("--store is not PostgreSQL")}
	}
	for _, c := range cs {
		role := prefix + string(c)
		if err := pg.GrantComponent(ctx, c, role, create); err != nil {
			return &exitError{code: exitOther, err: err}
		}
		grants, _ := store.ComponentGrants(c, role)
		fmt.Fprintf(stdout, "ROLE\t%s\t%s\t%d grants\n", c, role, len(grants))
		for _, g := range grants {
			fmt.Fprintf(stdout, "GRANT\t%s\t%s\n", role, strings.Join(strings.Fields(g), " "))
		}
	}
	return nil
}
