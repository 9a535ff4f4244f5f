package console

import (
	"net/http"
	"time"

	"github.com/phantom-perimeter/phantom/internal/admin"
)

// ActionDescribeInstances authorizes the nodes page: nodes are Phantom's EC2 instances.
const ActionDescribeInstances = "ec2:DescribeInstances"

type nodesData struct {
	Nodes []nodeRow
}

// nodeRow is a node as the page shows it, times in UTC as the other pages write them.
type nodeRow struct {
	admin.NodeInfo
	NotAfter, EnrolledAt, LastContact, RevokedAt string
}

func uiTime(t *admin.Time) string {
	if t == nil {
		return ""
	}
	return time.Time(*t).UTC().Format("2006-01-02 15:04:05")
}

// nodes lists the spec's nodes and the enrolled ones: status, certificate serial and
// expiry, last contact (phantom node list's view).
func (h *Handler) nodes(w http.ResponseWriter, r *http.Request) {
	rq, ok := h.signedIn(w, r, false)
	if !ok || !h.authorize(rq, "DescribeInstances", check{ActionDescribeInstances, "*"}) {
		return
	}
	recs, err := h.cfg.Store.ListNodes(r.Context())
	if err != nil {
		h.log.Error("list nodes", "error", err)
		h.errorPage(w, r, rq, http.StatusInternalServerError, "Nodes unavailable", "The nodes could not be read from the store.")
		return
	}
	var d nodesData
	for _, n := range admin.NodeList(rq.spec, recs, h.cfg.Identity.NodeRevocation) {
		d.Nodes = append(d.Nodes, nodeRow{NodeInfo: n, NotAfter: uiTime(n.NotAfter), EnrolledAt: uiTime(n.EnrolledAt),
			LastContact: uiTime(n.LastContact), RevokedAt: uiTime(n.RevokedAt)})
	}
	h.render(w, r, http.StatusOK, "nodes", rq, "Nodes", d)
}
