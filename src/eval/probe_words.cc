// The fixed list probe keys are drawn from: common, concrete English words (TinyStories-like), all
// lowercase ASCII and distinct. Fixed rather than drawn from a word library so that a probe example is
// the same on every machine (mohawk draws its keys with wonderwords' RandomWord instead).
#include "eval/probes.h"

namespace subq {

const std::vector<std::string>& ProbeWords() {
  static const std::vector<std::string> words = {
    "apple", "ball", "bird", "boat", "book", "box", "bread", "bug", "cake", "candle", "car", "cat", "chair",
    "cloud", "coat", "cookie", "cow", "cup", "desk", "dog", "door", "dream", "drum", "duck", "egg", "eye",
    "farm", "fish", "flag", "flower", "fork", "fox", "frog", "garden", "gate", "gift", "girl", "glass", "goat",
    "grape", "grass", "hat", "hill", "horse", "house", "ice", "jam", "jar", "juice", "kite", "lamp",
    "leaf", "lemon", "lion", "map", "milk", "mirror", "moon", "mouse", "nest", "nose", "owl", "paint", "pan",
    "park", "pear", "pen", "pig", "pillow", "plant", "plate", "pond", "queen", "rabbit", "rain", "ring",
    "river", "road", "robot", "rock", "roof", "rope", "rose", "salt", "sand", "shell", "ship", "shoe", "sky",
    "snail", "snow", "sock", "spoon", "star", "stone", "sun", "table", "tail", "tent", "tiger", "toy", "train",
    "tree", "truck", "turtle", "wall", "watch", "water", "wheel", "window", "wing", "wolf", "yard", "zebra",
    "anchor", "arrow", "basket", "bean", "bell", "berry", "blanket", "bottle", "bowl", "branch", "brick",
    "bridge", "brush", "bucket", "button", "cabin", "camel", "carpet", "castle", "chain", "cheese", "cherry",
    "circle", "clock", "corn", "crown", "daisy", "dinosaur", "dragon", "eagle", "engine", "feather", "fence",
    "forest", "fountain", "gloves", "hammer", "honey", "island", "jacket", "jungle", "kettle", "ladder",
    "lantern", "letter", "lizard", "meadow", "melon", "mitten", "monkey", "mountain", "needle", "ocean",
    "onion", "orange", "pancake", "parrot", "peach", "pebble", "pencil", "penguin", "pepper", "piano", "pirate",
    "pizza", "planet", "pocket", "potato", "puddle", "pumpkin", "puppet", "rainbow", "rocket", "saddle",
    "scarf", "shadow", "sheep", "shovel", "slide", "spider", "squirrel", "stairs", "stick", "sugar", "swing",
    "teapot", "thunder", "ticket", "tomato", "tower", "tractor", "trumpet", "tunnel", "umbrella", "valley",
    "violin", "wagon", "whale", "whistle", "wizard",
  };
  return words;
}

}  // namespace subq
