// The dp × tp mesh: its sub-groups and the per-thread group shapes the shape rules read.
#include "dist/mesh.h"

namespace shardrt::dist {

Mesh::Mesh(Communicator& world, int dp, int tp) : world_(&world), dp_(dp), tp_(tp) { init(); }

Mesh::Mesh(std::unique_ptr<Communicator> world, int dp, int tp)
    : owned_(std::move(world)), world_(owned_.get()), dp_(dp), tp_(tp) {
  init();
}

void Mesh::init() {
  if (dp_ < 1 || tp_ < 1 || int64_t(dp_) * tp_ != world_->size())
    throw Error("mesh dp=" + std::to_string(dp_) + " x tp=" + std::to_string(tp_) + " needs " +
                std::to_string(int64_t(dp_) * tp_) + " ranks; the world (" + world_->backend() + ") has " +
                std::to_string(world_->size()));
  int r = world_->rank();
  // Both splits are collective over the world; every rank makes them in this order.
  tp_group_ = world_->split(r / tp_, r % tp_, "tp");
  dp_group_ = world_->split(r % tp_, r / tp_, "dp");
}

Communicator& Mesh::group(const std::string& name) {
  if (name == "tp") return *tp_group_;
  if (name == "dp") return *dp_group_;
  if (name == "world") return *world_;
  throw Error("collective group '" + name + "' is not known (tp|dp|world)");
}

std::string Mesh::describe() const {
  return "mesh dp=" + std::to_string(dp_) + " x tp=" + std::to_string(tp_) + " (" + world_->backend() + "), rank " +
         std::to_string(world_->rank()) + " = dp " + std::to_string(dp_index()) + ", tp " +
         std::to_string(tp_index());
}

namespace {
// Index 0: tp, 1: dp, 2: world.
thread_local GroupShape g_shapes[3];
int slot(const std::string& name) { return name == "tp" ? 0 : name == "dp" ? 1 : name == "world" ? 2 : -1; }
}  // namespace

GroupShape current_group_shape(const std::string& name) {
  int s = slot(name);
  return s < 0 ? GroupShape{} : g_shapes[s];
}

ScopedGroupShapes::ScopedGroupShapes(Communicator& comm) : saved_set_(true) {
  const char* names[3] = {"tp", "dp", "world"};
  for (int i = 0; i < 3; ++i) {
    saved_[i] = g_shapes[i];
    Communicator& g = comm.group(names[i]);
    g_shapes[i] = GroupShape{g.size(), g.rank()};
  }
}

ScopedGroupShapes::ScopedGroupShapes(int dp, int tp, int world_rank) : saved_set_(true) {
  for (int i = 0; i < 3; ++i) saved_[i] = g_shapes[i];
  g_shapes[0] = GroupShape{tp, world_rank % tp};
  g_shapes[1] = GroupShape{dp, world_rank / tp};
  g_shapes[2] = GroupShape{dp * tp, world_rank};
}

ScopedGroupShapes::~ScopedGroupShapes() {
  if (saved_set_)
    for (int i = 0; i < 3; ++i) g_shapes[i] = saved_[i];
}

}  // namespace shardrt::dist
